<?php
// A pipelining client in PHP: writes COUNT lines at once, keeps the connection open (no
// shutdown), reads until every reply has come or 20 s pass, and prints `ok COUNT` if they all
// came back in order. Usage: php pipeline.php SOCKET COUNT
$path = $argv[1];
$count = (int)$argv[2];
$sock = socket_create(AF_UNIX, SOCK_STREAM, 0);
if ($sock === false || !socket_connect($sock, $path)) {
    fwrite(STDERR, "connect: " . socket_strerror(socket_last_error()) . "\n");
    exit(1);
}
socket_set_option($sock, SOL_SOCKET, SO_RCVTIMEO, ["sec" => 20, "usec" => 0]);
$out = "";
for ($i = 0; $i < $count; $i++) {
    $out .= "m$i\n";
}
$left = $out;
while (strlen($left) > 0) {
    $n = socket_write($sock, $left, strlen($left));
    if ($n === false) {
        fwrite(STDERR, "write: " . socket_strerror(socket_last_error($sock)) . "\n");
        exit(1);
    }
    $left = substr($left, $n);
}
$got = "";
$deadline = microtime(true) + 20;
while (substr_count($got, "\n") < $count && microtime(true) < $deadline) {
    $chunk = socket_read($sock, 65536);
    if ($chunk === false || $chunk === "") {
        break;
    }
    $got .= $chunk;
}
if ($got !== $out) {
    fwrite(STDERR, "got " . substr_count($got, "\n") . " of $count replies\n");
    exit(1);
}
echo "ok $count\n";
socket_close($sock);
