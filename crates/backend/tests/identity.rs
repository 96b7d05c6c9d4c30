//! Backend identity on a fake /proc tree and on real processes: a python http.server, and a
//! throwaway php-fpm master with one pool (skipped when php-fpm is not installed).

mod common;

use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use why502_backend::identity::{identify_backend, BackendKind, LogRole};
use why502_backend::phpfpm::{find_php_fpm_configs, ConfigOrigin, PhpFpmConfig};
use why502_backend::BackendAddr;
use why502_host::ProcessTable;

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

struct FakeProc {
    dir: tempfile::TempDir,
}

impl FakeProc {
    fn new(btime: u64) -> FakeProc {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("stat"),
            format!("cpu  1 2 3\nbtime {btime}\n"),
        )
        .unwrap();
        FakeProc { dir }
    }

    fn add(
        &self,
        pid: u32,
        ppid: u32,
        comm: &str,
        argv: &[&str],
        start_ticks: u64,
        cgroup: &str,
    ) -> PathBuf {
        let d = self.dir.path().join(pid.to_string());
        std::fs::create_dir_all(d.join("fd")).unwrap();
        std::fs::write(
            d.join("stat"),
            format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 {start_ticks} 0 0"),
        )
        .unwrap();
        let mut cmdline = argv.join("\0");
        cmdline.push('\0');
        std::fs::write(d.join("cmdline"), cmdline).unwrap();
        std::fs::write(d.join("cgroup"), cgroup).unwrap();
        d
    }

    fn table(&self) -> ProcessTable {
        ProcessTable::read(self.dir.path())
    }
}

fn debian_config() -> (tempfile::TempDir, PhpFpmConfig) {
    let dir = tempfile::tempdir().unwrap();
    common::copy_tree(&common::fixtures().join("phpfpm/debian"), dir.path());
    let c = PhpFpmConfig::load(&dir.path().join("etc/php/8.2/fpm/php-fpm.conf")).unwrap();
    (dir, c)
}

#[test]
fn php_fpm_worker_in_a_fake_proc_tree() {
    let now = SystemTime::now();
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (_cdir, config) = debian_config();
    let proc = FakeProc::new(now_secs - 1000);
    let cg = "0::/system.slice/php8.2-fpm.service\n";
    let title = format!("php-fpm: master process ({})", config.main_file.display());
    // The master started 970 s after boot, 30 s ago; the worker later.
    let master = proc.add(100, 1, "php-fpm8.2", &[&title], 970 * clock_ticks(), cg);
    proc.add(
        101,
        100,
        "php-fpm8.2",
        &["php-fpm: pool www"],
        990 * clock_ticks(),
        cg,
    );
    symlink("/var/log/php8.2-fpm.log", master.join("fd/2")).unwrap();
    symlink("/srv/other/app.log", master.join("fd/5")).unwrap();
    symlink("socket:[151216]", master.join("fd/6")).unwrap();

    let id =
        identify_backend(&proc.table(), 101, std::slice::from_ref(&config), None, now).unwrap();
    assert_eq!(id.kind, BackendKind::PhpFpmPool { pool: "www".into() });
    assert_eq!(id.master_pid, Some(100));
    assert_eq!(id.fpm_pool.as_deref(), Some("www"));
    assert_eq!(id.fpm_config.as_ref(), Some(&config.main_file));
    assert_eq!(id.unit.as_deref(), Some("php8.2-fpm.service"));
    assert_eq!(id.started_at, Some((now_secs - 30) as i64));
    let age = id.age_secs.unwrap();
    assert!((29..=31).contains(&age), "age {age}");
    let logs: Vec<_> = id
        .logs
        .iter()
        .map(|l| (l.path.to_str().unwrap(), l.role))
        .collect();
    // The config's error_log first; the fd scan adds only what the config did not name.
    assert_eq!(
        logs,
        vec![
            ("/var/log/php8.2-fpm.log", LogRole::FpmErrorLog),
            ("/srv/other/app.log", LogRole::OpenFile),
        ]
    );
    assert!(id.unknowns.is_empty(), "{:?}", id.unknowns);
}

#[test]
fn php_fpm_master_picks_the_pool_serving_the_upstream() {
    let now = SystemTime::now();
    let (_cdir, config) = debian_config();
    let proc = FakeProc::new(1);
    let title = format!("php-fpm: master process ({})", config.main_file.display());
    proc.add(100, 1, "php-fpm8.2", &[&title], 5, "0::/\n");
    let up = BackendAddr::parse_upstream("127.0.0.1:9001").unwrap();
    // The config is not passed in: identity loads it from the title.
    let id = identify_backend(&proc.table(), 100, &[], Some(&up), now).unwrap();
    assert_eq!(id.kind, BackendKind::PhpFpmMaster);
    assert_eq!(id.master_pid, Some(100));
    assert_eq!(id.fpm_pool.as_deref(), Some("shop"));
    assert_eq!(id.unit, None, "no unit in a root cgroup");
    let roles: Vec<_> = id
        .logs
        .iter()
        .map(|l| (l.path.to_str().unwrap(), l.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("/var/log/php8.2-fpm.log", LogRole::FpmErrorLog),
            ("/var/log/php-fpm/shop-slow.log", LogRole::FpmSlowlog),
            ("/var/log/php-fpm/shop-error.log", LogRole::PhpErrorLog),
        ]
    );
}

#[test]
fn gunicorn_worker_walks_up_to_the_arbiter() {
    let proc = FakeProc::new(1);
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("gunicorn.conf.py");
    std::fs::write(
        &conf,
        "bind = 'unix:/run/g.sock'\nerrorlog = '/var/log/gunicorn/error.log'\n",
    )
    .unwrap();
    let conf_s = conf.to_str().unwrap();
    let argv = [
        "/usr/bin/python3",
        "/srv/venv/bin/gunicorn",
        "-c",
        conf_s,
        "--error-logfile",
        "/var/log/g.log",
        "app:app",
    ];
    proc.add(
        200,
        1,
        "gunicorn",
        &argv,
        5,
        "0::/system.slice/app.service\n",
    );
    proc.add(
        201,
        200,
        "gunicorn",
        &argv,
        6,
        "0::/system.slice/app.service\n",
    );
    let id = identify_backend(&proc.table(), 201, &[], None, SystemTime::now()).unwrap();
    assert_eq!(id.kind, BackendKind::Gunicorn);
    assert_eq!(id.master_pid, Some(200));
    assert_eq!(id.unit.as_deref(), Some("app.service"));
    let logs: Vec<_> = id
        .logs
        .iter()
        .map(|l| (l.path.to_str().unwrap(), l.via.as_str()))
        .collect();
    assert_eq!(logs[0], ("/var/log/g.log", "--error-logfile"));
    assert_eq!(logs[1].0, "/var/log/gunicorn/error.log");
    assert!(logs[1].1.starts_with("errorlog = in "));
}

#[test]
fn unreadable_sources_are_reported() {
    let proc = FakeProc::new(1);
    let d = proc.add(300, 1, "node", &["/usr/bin/node", "server.js"], 5, "");
    std::fs::remove_file(d.join("cgroup")).unwrap();
    std::fs::remove_dir(d.join("fd")).unwrap();
    let id = identify_backend(&proc.table(), 300, &[], None, SystemTime::now()).unwrap();
    assert_eq!(id.kind, BackendKind::Node);
    assert_eq!(id.master_pid, None);
    assert!(
        id.unknowns.iter().any(|u| u.starts_with("cgroup:")),
        "{:?}",
        id.unknowns
    );
    assert!(
        id.unknowns.iter().any(|u| u.contains("open files of 300")),
        "{:?}",
        id.unknowns
    );
    assert!(identify_backend(&proc.table(), 999, &[], None, SystemTime::now()).is_none());
}

/// Kills and reaps a spawned process however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, still unreaped, by its pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn real_python_http_server() {
    let Some(python) = common::which("python3") else {
        return common::skip_or_fail("python3 not installed");
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python)
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Reaped(child);
    wait_until("http.server to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let now = SystemTime::now();
    let procs = ProcessTable::read(Path::new("/proc"));
    let up = BackendAddr::parse_upstream(&format!("127.0.0.1:{port}")).unwrap();
    let id = identify_backend(&procs, child.0.id(), &[], Some(&up), now).unwrap();
    assert_eq!(id.kind, BackendKind::Python);
    assert_eq!(id.master_pid, None);
    let age = id.age_secs.expect("start time from /proc");
    assert!(age < 60, "started {age} s ago");
    assert!(id.cgroup.is_some());
    // The command line names the address: it is also a "former backend" hint.
    let hints = why502_backend::former_backends(&up, &[], &[], &procs);
    assert!(hints
        .iter()
        .any(|f| f.source == why502_backend::FormerSource::Process { pid: child.0.id() }));
}

#[test]
fn real_php_fpm_master_and_pool() {
    let Some(fpm) = ["php-fpm8.2", "php-fpm", "php-fpm8.3", "php-fpm8.1"]
        .iter()
        .find_map(|p| {
            common::which(p)
                .or_else(|| Some(Path::new("/usr/sbin").join(p)).filter(|p| p.is_file()))
        })
    else {
        return common::skip_or_fail("php-fpm not installed");
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = d.join("fpm.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = no\n\n[lab]\nlisten = {d}/$pool.sock\npm = static\npm.max_children = 1\npm.status_path = /status\nslowlog = {d}/$pool.slow.log\nphp_admin_value[error_log] = {d}/$pool.php.log\n",
            d = d.display()
        ),
    )
    .unwrap();
    // -R lets the pool run as root when the test is root; otherwise it runs as the caller.
    let mut cmd = Command::new(&fpm);
    cmd.args(["-F", "-y"]).arg(&conf).arg("-p").arg(d);
    if common::is_root() {
        cmd.arg("-R");
    }
    let child = Reaped(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sock = d.join("lab.sock");
    wait_until("php-fpm's socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let master = child.0.id();
    let mut procs = ProcessTable::read(Path::new("/proc"));
    wait_until("php-fpm's worker", || {
        procs = ProcessTable::read(Path::new("/proc"));
        procs.children_of(master).count() == 1
    });
    let worker = procs.children_of(master).next().unwrap().pid;

    let found = find_php_fpm_configs(&procs, Path::new("/nonexistent-etc"));
    assert!(
        found
            .iter()
            .any(|f| f.path == conf && f.origin == ConfigOrigin::Running { pid: master }),
        "{found:?}"
    );

    let up = BackendAddr::parse_upstream(&format!("unix:{}", sock.display())).unwrap();
    let config = PhpFpmConfig::load_with_prefix(&conf, d).unwrap();
    let id = identify_backend(&procs, worker, &[config], Some(&up), SystemTime::now()).unwrap();
    assert_eq!(id.kind, BackendKind::PhpFpmPool { pool: "lab".into() });
    assert_eq!(id.master_pid, Some(master));
    assert_eq!(id.fpm_config.as_deref(), Some(conf.as_path()));
    assert!(id.age_secs.unwrap() < 60);
    let logs: Vec<_> = id.logs.iter().map(|l| (l.path.clone(), l.role)).collect();
    assert_eq!(logs[0], (d.join("fpm.log"), LogRole::FpmErrorLog));
    assert!(logs.contains(&(d.join("lab.slow.log"), LogRole::FpmSlowlog)));
    assert!(logs.contains(&(d.join("lab.php.log"), LogRole::PhpErrorLog)));
    // The master's own log line is in the window.
    let w =
        why502_backend::read_backend_log(&d.join("fpm.log"), 0, why502_host::TailLimits::default())
            .unwrap();
    assert!(w.stamped_lines >= 2, "php-fpm wrote its start-up notices");
    drop(child);
    assert!(
        !Path::new(&format!("/proc/{master}")).exists(),
        "php-fpm left running"
    );
}
