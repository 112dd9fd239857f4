//! Harness for the end-to-end tests: starts the real `ipc-server` on a temporary socket path,
//! runs `ipc-client`, and talks raw bytes over `UnixStream`.
//!
//! Each test file includes this module (`mod support;`). The binaries' paths come from cargo
//! (`CARGO_BIN_EXE_*`), which builds them, fresh, before it runs the tests of their package.
//! Every command starts with a clean environment: no `IPC_*` variable of the caller leaks in.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

/// How long any single wait in these tests may take before the test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The `ipc-server` binary cargo built for these tests, or the one `IPC_TEST_SERVER` names:
/// pointing the tests at an older build shows which of them guard against its bugs.
pub fn server_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| named_or_built("IPC_TEST_SERVER", env!("CARGO_BIN_EXE_ipc-server")))
}

/// The `ipc-client` binary cargo built for these tests, or the one `IPC_TEST_CLIENT` names (as
/// `IPC_TEST_SERVER` for the server).
pub fn client_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| named_or_built("IPC_TEST_CLIENT", env!("CARGO_BIN_EXE_ipc-client")))
}

/// The binary the variable `var` names, else the one cargo built (`built`).
fn named_or_built(var: &str, built: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(built), PathBuf::from)
}

/// The cargo target directory these tests were built in (`target/` or `CARGO_TARGET_DIR`),
/// where `.ci/setup` puts the tools the tests use.
pub fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_ipc-server"));
    // <target>/<profile>/ipc-server
    bin.ancestors()
        .nth(2)
        .expect("a target directory")
        .to_owned()
}

/// A tool `.ci/setup` installed for the tests (`varlinkctl`, `varlink`, ...), in
/// `<target>/tools/bin`.
pub fn tool(name: &str) -> PathBuf {
    let path = target_dir().join("tools/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash .ci/setup` once (it installs the tools the tests use)",
        path.display()
    );
    path
}

/// A command running `ipc-server`, with no `IPC_*` variable of the caller's environment.
pub fn server_cmd() -> Command {
    let mut cmd = Command::new(server_bin());
    clean_env(&mut cmd);
    cmd
}

/// A command running `ipc-client`, with no `IPC_*` variable of the caller's environment.
pub fn client_cmd() -> Command {
    let mut cmd = Command::new(client_bin());
    clean_env(&mut cmd);
    cmd
}

/// A command running the binary named `name` (`ipc-server` or `ipc-client`), environment cleaned.
pub fn binary_cmd(name: &str) -> Command {
    match name {
        "ipc-server" => server_cmd(),
        "ipc-client" => client_cmd(),
        other => panic!("no binary {other}"),
    }
}

/// A command running the example `name`, environment cleaned.
pub fn example_cmd(name: &str) -> Command {
    let mut cmd = Command::new(example(name));
    clean_env(&mut cmd);
    cmd
}

/// Path of an example of this package; `cargo test` builds them together with the tests, in
/// the same run, beside the binaries.
pub fn example(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_ipc-server"))
        .parent()
        .expect("target directory")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace`",
        path.display()
    );
    path
}

/// Raises this process's open-file limit to its hard limit (children inherit it), so tests with
/// a thousand connections do not trip over a low default.
pub use localipc_cli::raise_fd_limit;

/// Sends `sig` to a child process.
pub fn signal(child: &Child, sig: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("kill");
}

/// A running `ipc-server` on a socket in its own temporary directory. Killed on drop.
pub struct TestServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestServer {
    /// Starts `ipc-server --socket <tmp>/ipc.sock ARGS...` and waits until it accepts.
    pub fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ipc.sock");
        Self::start_at(dir, path, args)
    }

    /// Starts a server at `path` (inside `dir`, which the server keeps alive).
    pub fn start_at(dir: tempfile::TempDir, path: PathBuf, args: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            path,
            dir,
        };
        server.child = Some(server.spawn(args));
        wait_until("the server accepts", || {
            UnixStream::connect(&server.path).is_ok()
        });
        server
    }

    /// Starts another server process on the same path, without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> Child {
        raise_fd_limit();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        server_cmd()
            .arg("--socket")
            .arg(&self.path)
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ipc-server")
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary directory holding the socket and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// How many descriptors the server process holds (`/proc/PID/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the server's /proc entry")
            .count()
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: Signal) {
        signal(self.child.as_ref().expect("running"), sig);
    }

    /// Waits for the server to exit and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "server did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `ipc-client --socket <this server> ARGS...`.
    pub fn client(&self, args: &[&str]) -> Output {
        client(&self.path, args)
    }

    /// A raw connection to the server, with read and write timeouts so a test cannot hang.
    pub fn connect(&self) -> UnixStream {
        connect(&self.path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

/// A child process killed (and reaped) when this goes out of scope, so a failing test leaves no
/// server running.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Running a command to its end, with a deadline.
pub trait OutputWithin {
    /// Runs the command to its end and returns its output (stdin closed, stdout and stderr
    /// captured), failing the test if it is still running after [`PATIENCE`].
    fn output_within(&mut self) -> Output;

    /// As [`output_within`](Self::output_within), with `input` on the command's stdin.
    fn output_fed_within(&mut self, input: &[u8]) -> Output;
}

impl OutputWithin for Command {
    fn output_within(&mut self) -> Output {
        self.stdin(Stdio::null());
        finish_within(self, None)
    }

    fn output_fed_within(&mut self, input: &[u8]) -> Output {
        self.stdin(Stdio::piped());
        finish_within(self, Some(input.to_vec()))
    }
}

fn finish_within(cmd: &mut Command, input: Option<Vec<u8>>) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let pid = child.id();
    let stdin = child.stdin.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            let _ = stdin.write_all(&input);
        }
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(out) => out.expect("collect the output"),
        Err(_) => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("{:?} did not finish within {PATIENCE:?}", cmd.get_program());
        }
    }
}

/// Waits for a child to exit, failing the test if it is still running after [`PATIENCE`].
pub fn wait_within(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("process {} did not exit within {PATIENCE:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `ipc-client --socket PATH ARGS...` and returns its output.
pub fn client(path: &Path, args: &[&str]) -> Output {
    client_cmd()
        .arg("--socket")
        .arg(path)
        .args(args)
        .output_within()
}

/// Removes every `IPC_*` variable of the caller's environment, so a developer's settings cannot
/// change what a test sees.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("IPC_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A raw connection with read and write timeouts of [`PATIENCE`].
pub fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Polls `cond` until it holds, failing the test after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads one `\n`-terminated line (without the `\n`), byte by byte.
pub fn read_line(s: &mut UnixStream) -> io::Result<Vec<u8>> {
    read_until(s, b'\n')
}

/// Reads up to `end` (which is not returned), byte by byte, so nothing after it is consumed.
fn read_until(s: &mut UnixStream, end: u8) -> io::Result<Vec<u8>> {
    let mut message = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ if byte[0] == end => return Ok(message),
            _ => message.push(byte[0]),
        }
    }
}

/// Writes one length-prefixed frame.
pub fn write_frame(s: &mut UnixStream, payload: &[u8]) -> io::Result<()> {
    let mut buf = (payload.len() as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(payload);
    s.write_all(&buf)
}

/// Reads one length-prefixed frame.
pub fn read_frame(s: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut payload = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload)?;
    Ok(payload)
}

/// Reads until the peer closes; returns what arrived.
pub fn read_to_close(s: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    Ok(rest)
}

/// The exit code of a finished process, failing the test if a signal killed it.
pub fn code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {status:?}"))
}

/// Runs a shell command with `stdin` fed to it and returns its output.
pub fn sh(script: &str, stdin: &[u8]) -> Output {
    clean_env(&mut Command::new("sh"))
        .arg("-c")
        .arg(script)
        .output_fed_within(stdin)
}

/// The plain protocol's and Varlink's `--protocol` arguments.
pub const PROTOCOLS: [&str; 2] = ["plain", "varlink"];

/// A peer program in `tests/peers`.
pub fn peer(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/peers")
        .join(name)
}

/// The Python with the reference Varlink packages (`varlink`, `asyncvarlink`): `IPC_TEST_PYTHON`
/// if set, else the virtual environment `.ci/run` creates in `target/pyenv`.
pub fn varlink_python() -> PathBuf {
    let python = std::env::var_os("IPC_TEST_PYTHON")
        .map_or_else(|| target_dir().join("pyenv/bin/python"), PathBuf::from);
    let ok = Command::new(&python)
        .args(["-c", "import varlink, asyncvarlink"])
        .output_within()
        .status
        .success();
    assert!(
        ok,
        "{} cannot import varlink and asyncvarlink: run `bash .ci/setup` once (it creates \
         target/pyenv), or set IPC_TEST_PYTHON to a Python that has them",
        python.display()
    );
    python
}

/// A command that runs `program` as the user nobody (uid and gid 65534) through `setpriv`,
/// with `groups` as its supplementary groups (`--clear-groups`, or `--groups=G,...`), and no
/// `IPC_*` variable of the caller's. Only root can run it.
pub fn as_nobody(groups: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    clean_env(&mut cmd);
    cmd.args(["--reuid=65534", "--regid=65534", groups, "--"])
        .arg(program);
    cmd
}

/// Starts `ipc-server --socket PATH ARGS...` under an address-space limit of `limit` bytes
/// (`prlimit --as`), logging at `info` to `log`, and waits until it accepts.
pub fn server_under_prlimit(limit: u64, path: &Path, args: &[&str], log: &Path) -> Reaped {
    let mut cmd = Command::new("prlimit");
    clean_env(&mut cmd);
    let server = Reaped(
        cmd.arg(format!("--as={limit}"))
            .arg("--")
            .arg(server_bin())
            .arg("--socket")
            .arg(path)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).expect("log file"))
            .spawn()
            .expect("prlimit (util-linux)"),
    );
    wait_until("the server listens", || UnixStream::connect(path).is_ok());
    server
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Reads one NUL-terminated message (without the NUL), byte by byte.
pub fn read_nul(s: &mut UnixStream) -> io::Result<Vec<u8>> {
    read_until(s, 0)
}

/// Runs systemd's varlinkctl (from `.ci/setup`) within the tests' patience.
pub fn varlinkctl(args: &[&str]) -> Output {
    Command::new(tool("varlinkctl")).args(args).output_within()
}

/// Runs varlinkctl, which must succeed, and returns its stdout.
pub fn varlinkctl_ok(args: &[&str]) -> String {
    let out = varlinkctl(args);
    assert!(out.status.success(), "varlinkctl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Every JSON value in `text` (varlinkctl prints one per reply, pretty or not, and streams as
/// JSON sequences: each value after an ASCII record separator).
pub fn json_values(text: &str) -> Vec<serde_json::Value> {
    let text = text.replace('\x1e', "");
    serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A server from `tests/peers` written with the reference Python `varlink` package, on a
/// socket in a temporary directory (its last argument); stopped when dropped.
pub struct PythonServer {
    _child: Reaped,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl PythonServer {
    /// Runs `script` with `args` and the socket's path, and waits until it accepts.
    pub fn start(script: &str, args: &[&std::ffi::OsStr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("py.sock");
        let child = Reaped(
            Command::new(varlink_python())
                .arg(peer(script))
                .args(args)
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the Python server"),
        );
        wait_until("the Python server accepts", || {
            UnixStream::connect(&path).is_ok()
        });
        Self {
            _child: child,
            _dir: dir,
            path,
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
