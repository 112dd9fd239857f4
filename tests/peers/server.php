<?php
// The classic simple server: for each client, read once (up to 1024 bytes), write the ack
// reply cut to 16 bytes with no terminator, close. Usage: php server.php SOCKET
$path = $argv[1];
$sock = socket_create(AF_UNIX, SOCK_STREAM, 0);
if (!socket_bind($sock, $path) || !socket_listen($sock, 5)) {
    fwrite(STDERR, "bind: " . socket_strerror(socket_last_error()) . "\n");
    exit(1);
}
chmod($path, 0600);
while (true) {
    $client = socket_accept($sock);
    if ($client === false) {
        continue;
    }
    $message = socket_read($client, 1024);
    fwrite(STDERR, "received: $message\n");
    socket_write($client, "Mensagem recebida!", 16);
    socket_close($client);
}
