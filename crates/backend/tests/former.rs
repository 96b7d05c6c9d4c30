//! What used to serve a down upstream: php-fpm pools, systemd units (Debian's real php-fpm
//! unit and written ones), and command lines of running processes.

mod common;

use std::path::{Path, PathBuf};

use why502_backend::identity::{BackendKind, LogRole};
use why502_backend::phpfpm::PhpFpmConfig;
use why502_backend::units::{read_units, UnitFile};
use why502_backend::{former_backends, BackendAddr, FormerBackend, FormerSource};
use why502_host::ProcessTable;

struct World {
    _dir: tempfile::TempDir,
    configs: Vec<PhpFpmConfig>,
    units: Vec<UnitFile>,
    unknowns: Vec<String>,
    procs: ProcessTable,
    _proc_dir: tempfile::TempDir,
}

fn world(procs: &[(u32, u32, &str)]) -> World {
    let dir = tempfile::tempdir().unwrap();
    common::copy_tree(&common::fixtures().join("phpfpm/debian"), dir.path());
    let configs =
        vec![PhpFpmConfig::load(&dir.path().join("etc/php/8.2/fpm/php-fpm.conf")).unwrap()];
    let sys = common::fixtures().join("systemd");
    let (units, unknowns) = read_units(&[sys.join("etc"), sys.join("lib"), sys.join("absent")]);
    let proc_dir = tempfile::tempdir().unwrap();
    for (pid, ppid, cmdline) in procs {
        let d = proc_dir.path().join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("stat"),
            format!("{pid} (x) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0"),
        )
        .unwrap();
        std::fs::write(d.join("cmdline"), cmdline.replace(' ', "\0")).unwrap();
    }
    World {
        _dir: dir,
        configs,
        units,
        unknowns,
        procs: ProcessTable::read(proc_dir.path()),
        _proc_dir: proc_dir,
    }
}

fn find(w: &World, upstream: &str) -> Vec<FormerBackend> {
    former_backends(
        &BackendAddr::parse_upstream(upstream).unwrap(),
        &w.configs,
        &w.units,
        &w.procs,
    )
}

fn log_paths(f: &FormerBackend) -> Vec<(PathBuf, LogRole)> {
    f.logs.iter().map(|l| (l.path.clone(), l.role)).collect()
}

#[test]
fn units_are_read_and_masked_ones_skipped_silently() {
    let w = world(&[]);
    let mut names: Vec<_> = w.units.iter().map(|u| u.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api.service",
            "gunicorn.service",
            "gunicorn.socket",
            "node-app.service",
            "php8.2-fpm.service",
            "uwsgi-app.service"
        ]
    );
    assert!(w.unknowns.is_empty(), "{:?}", w.unknowns);
}

#[test]
fn php_fpm_pool_on_a_unix_socket_with_its_unit_and_logs() {
    let w = world(&[]);
    let found = find(&w, "unix:/run/php/php8.2-fpm.sock");
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.kind, BackendKind::PhpFpmPool { pool: "www".into() });
    // Debian's unit runs /usr/sbin/php-fpm8.2 for /etc/php/8.2/fpm.
    assert_eq!(f.unit.as_deref(), Some("php8.2-fpm.service"));
    assert_eq!(f.running, Some(false));
    assert_eq!(
        log_paths(f),
        vec![(
            PathBuf::from("/var/log/php8.2-fpm.log"),
            LogRole::FpmErrorLog
        )]
    );
    let FormerSource::PhpFpmPool {
        pool, file, line, ..
    } = &f.source
    else {
        panic!("pool source expected");
    };
    assert_eq!(pool, "www");
    assert!(file.ends_with("pool.d/www.conf"));
    let text = std::fs::read_to_string(file).unwrap();
    assert_eq!(
        text.lines().nth(line - 1).unwrap(),
        "listen = /run/php/php8.2-fpm.sock",
        "the source line is the listen directive"
    );
    assert!(f.detail.contains("listens on /run/php/php8.2-fpm.sock"));
}

#[test]
fn pools_on_ports_match_wildcards_and_exact_hosts() {
    let w = world(&[]);
    let found = find(&w, "127.0.0.1:9000");
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].kind,
        BackendKind::PhpFpmPool {
            pool: "legacy".into()
        }
    );
    let found = find(&w, "127.0.0.1:9001");
    assert_eq!(
        found[0].kind,
        BackendKind::PhpFpmPool {
            pool: "shop".into()
        }
    );
    let roles: Vec<_> = log_paths(&found[0]);
    assert!(roles.contains(&(
        PathBuf::from("/var/log/php-fpm/shop-slow.log"),
        LogRole::FpmSlowlog
    )));
    assert!(roles.contains(&(
        PathBuf::from("/var/log/php-fpm/shop-error.log"),
        LogRole::PhpErrorLog
    )));
    assert!(find(&w, "127.0.0.1:5555").is_empty());
}

#[test]
fn debians_version_less_socket_link_names_the_unit() {
    let w = world(&[]);
    let found = find(&w, "unix:/run/php/php-fpm.sock");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].unit.as_deref(), Some("php8.2-fpm.service"));
    assert_eq!(found[0].kind, BackendKind::PhpFpmMaster);
}

#[test]
fn socket_unit_names_the_service_and_its_logs() {
    let w = world(&[]);
    let found = find(&w, "unix:/run/gunicorn.sock");
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.kind, BackendKind::Gunicorn);
    assert_eq!(f.unit.as_deref(), Some("gunicorn.service"));
    let FormerSource::SystemdUnit {
        file,
        line,
        directive,
    } = &f.source
    else {
        panic!("unit source expected");
    };
    assert!(file.ends_with("gunicorn.socket"));
    assert_eq!(*line, 5);
    assert_eq!(directive, "ListenStream=/run/gunicorn.sock");
    // `--error-logfile logs/gunicorn-error.log` relative to WorkingDirectory=/srv/app.
    assert_eq!(
        log_paths(f),
        vec![(
            PathBuf::from("/srv/app/logs/gunicorn-error.log"),
            LogRole::AppLog
        )]
    );
}

#[test]
fn exec_start_and_environment_name_addresses() {
    let w = world(&[]);
    let api = find(&w, "127.0.0.1:8001");
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].kind, BackendKind::Python);
    assert_eq!(api[0].unit.as_deref(), Some("api.service"));
    let node = find(&w, "127.0.0.1:3000");
    assert_eq!(node.len(), 1);
    assert_eq!(node[0].kind, BackendKind::Node);
    assert!(node[0]
        .detail
        .contains("Environment=NODE_ENV=production PORT=3000"));
    let uw = find(&w, "localhost:3031");
    assert_eq!(uw[0].kind, BackendKind::Uwsgi);
    assert_eq!(
        log_paths(&uw[0]),
        vec![(PathBuf::from("/var/log/uwsgi/app.log"), LogRole::AppLog)]
    );
}

#[test]
fn running_processes_whose_command_line_names_the_address() {
    let w = world(&[
        (300, 1, "/usr/bin/python3 /srv/venv/bin/gunicorn -b 127.0.0.1:8000 --error-logfile /var/log/g.log app:app"),
        (301, 300, "/usr/bin/python3 /srv/venv/bin/gunicorn -b 127.0.0.1:8000 --error-logfile /var/log/g.log app:app"),
        (400, 1, "/usr/bin/uwsgi --http-socket 127.0.0.1:8080"),
    ]);
    let found = find(&w, "127.0.0.1:8000");
    let pids: Vec<_> = found
        .iter()
        .filter_map(|f| match f.source {
            FormerSource::Process { pid } => Some(pid),
            _ => None,
        })
        .collect();
    assert_eq!(pids, [300, 301]);
    assert_eq!(found[0].kind, BackendKind::Gunicorn);
    assert_eq!(found[0].running, Some(true));
    assert_eq!(found[0].logs[0].path, Path::new("/var/log/g.log"));
    assert!(find(&w, "127.0.0.1:8081").is_empty());
}
