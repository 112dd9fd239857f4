<?php
// The classic client: writes its message with no terminator, reads once (up to 1024 bytes),
// prints what it read. Usage: php client.php SOCKET MESSAGE
$path = $argv[1];
$message = $argv[2];
$sock = socket_create(AF_UNIX, SOCK_STREAM, 0);
if ($sock === false || !socket_connect($sock, $path)) {
    fwrite(STDERR, "connect: " . socket_strerror(socket_last_error()) . "\n");
    exit(1);
}
socket_write($sock, $message, strlen($message));
$reply = socket_read($sock, 1024);
if ($reply === false) {
    fwrite(STDERR, "read: " . socket_strerror(socket_last_error($sock)) . "\n");
    exit(1);
}
echo $reply;
socket_close($sock);
