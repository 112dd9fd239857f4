<?php
// The classic socket_select server: many clients at once; each message is one read (up to
// 1024 bytes), answered with the ack reply cut to 16 bytes; the connection stays open for the
// next message. Usage: php select_server.php SOCKET
$path = $argv[1];
$server = socket_create(AF_UNIX, SOCK_STREAM, 0);
if (!socket_bind($server, $path) || !socket_listen($server, 5)) {
    fwrite(STDERR, "bind: " . socket_strerror(socket_last_error()) . "\n");
    exit(1);
}
chmod($path, 0600);
$clients = [];
while (true) {
    $read = array_merge([$server], $clients);
    $write = null;
    $except = null;
    if (socket_select($read, $write, $except, null) < 1) {
        continue;
    }
    foreach ($read as $ready) {
        if ($ready === $server) {
            $clients[] = socket_accept($server);
            continue;
        }
        $message = socket_read($ready, 1024);
        if ($message === false || $message === '') {
            $key = array_search($ready, $clients, true);
            unset($clients[$key]);
            socket_close($ready);
            continue;
        }
        fwrite(STDERR, "received: $message\n");
        socket_write($ready, "Mensagem recebida!", 16);
    }
}
