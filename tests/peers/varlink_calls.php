<?php
// A Varlink client in PHP that makes its calls one after another on one connection, keeping
// it open while it waits for each reply (up to 20 s), and prints each reply as one line of
// JSON. Usage: php varlink_calls.php SOCKET CALL_JSON...
$path = $argv[1];
$sock = socket_create(AF_UNIX, SOCK_STREAM, 0);
if ($sock === false || !socket_connect($sock, $path)) {
    fwrite(STDERR, "connect: " . socket_strerror(socket_last_error()) . "\n");
    exit(1);
}
socket_set_option($sock, SOL_SOCKET, SO_RCVTIMEO, ["sec" => 20, "usec" => 0]);
$pending = "";
foreach (array_slice($argv, 2) as $call) {
    $out = $call . "\0";
    while (strlen($out) > 0) {
        $n = socket_write($sock, $out, strlen($out));
        if ($n === false) {
            fwrite(STDERR, "write: " . socket_strerror(socket_last_error($sock)) . "\n");
            exit(1);
        }
        $out = substr($out, $n);
    }
    while (($end = strpos($pending, "\0")) === false) {
        $chunk = socket_read($sock, 65536);
        if ($chunk === false || $chunk === "") {
            fwrite(STDERR, "closed before the reply to $call\n");
            exit(1);
        }
        $pending .= $chunk;
    }
    echo substr($pending, 0, $end), "\n";
    $pending = substr($pending, $end + 1);
}
socket_close($sock);
