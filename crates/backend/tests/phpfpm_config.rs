//! php-fpm configuration on fixture trees: Debian's default layout, a panel-style pool with
//! `$pool` and a TCP port, a broken pool, and config discovery.

mod common;

use std::path::{Path, PathBuf};

use why502_backend::phpfpm::{find_php_fpm_configs, ConfigOrigin, FpmLogTarget, PhpFpmConfig};
use why502_backend::BackendAddr;
use why502_host::ProcessTable;

fn debian_tree() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    common::copy_tree(&common::fixtures().join("phpfpm/debian"), dir.path());
    let main = dir.path().join("etc/php/8.2/fpm/php-fpm.conf");
    (dir, main)
}

#[test]
fn debian_default_layout() {
    let (dir, main) = debian_tree();
    let c = PhpFpmConfig::load(&main).unwrap();
    assert_eq!(
        c.global.error_log,
        FpmLogTarget::File("/var/log/php8.2-fpm.log".into())
    );
    assert_eq!(c.global.pid, Some("/run/php/php8.2-fpm.pid".into()));
    // The include glob read the pool files in name order.
    let names: Vec<_> = c.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["legacy", "shop", "www"]);
    assert_eq!(c.files.len(), 4);
    let www = c.pool("www").unwrap();
    assert_eq!(
        www.listen,
        Some(BackendAddr::Unix("/run/php/php8.2-fpm.sock".into()))
    );
    assert_eq!(www.listen_owner.as_deref(), Some("www-data"));
    assert_eq!(www.listen_group.as_deref(), Some("www-data"));
    assert_eq!(www.listen_mode, None, "commented out in Debian's www.conf");
    assert_eq!(www.user.as_deref(), Some("www-data"));
    assert_eq!(www.pm.as_deref(), Some("dynamic"));
    assert_eq!(www.max_children, Some(5));
    assert_eq!(www.status_path, None);
    assert_eq!(www.file, dir.path().join("etc/php/8.2/fpm/pool.d/www.conf"));
    // Debian's www.conf has its header on the first non-comment line.
    assert!(www.line > 1);
    assert_eq!(
        www.setting("pm.start_servers"),
        Some("2"),
        "known and unknown keys are kept as written"
    );
}

#[test]
fn panel_pool_with_dollar_pool_and_port() {
    let (_dir, main) = debian_tree();
    let c = PhpFpmConfig::load(&main).unwrap();
    let shop = c.pool("shop").unwrap();
    assert_eq!(
        shop.listen,
        Some(BackendAddr::Tcp {
            host: Some("127.0.0.1".into()),
            port: 9001
        })
    );
    assert_eq!(shop.listen_backlog, Some(64));
    assert_eq!(shop.pm.as_deref(), Some("static"));
    assert_eq!(shop.max_children, Some(4));
    assert_eq!(shop.status_path.as_deref(), Some("/fpm-status"));
    assert_eq!(shop.ping_path.as_deref(), Some("/ping"));
    assert_eq!(shop.ping_response.as_deref(), Some("pong; ok"));
    assert_eq!(shop.slowlog, Some("/var/log/php-fpm/shop-slow.log".into()));
    assert_eq!(shop.request_slowlog_timeout, Some(5));
    assert_eq!(shop.request_terminate_timeout, Some(120));
    assert_eq!(shop.catch_workers_output, Some(true));
    assert_eq!(shop.chdir, Some("/srv/shop".into()));
    assert_eq!(
        shop.php_error_log(),
        Some("/var/log/php-fpm/shop-error.log".into())
    );
    assert_eq!(shop.memory_limit(), Some("256M"));
    assert_eq!(shop.session_save_path(), Some("/var/lib/php/sessions/shop"));
    assert_eq!(shop.upload_tmp_dir(), Some("/srv/shop/tmp"));
    assert_eq!(shop.setting("env[APP_ENV]"), Some("production"));
}

#[test]
fn broken_lines_are_problems_with_file_and_line() {
    let (dir, main) = debian_tree();
    let c = PhpFpmConfig::load(&main).unwrap();
    let legacy_file = dir.path().join("etc/php/8.2/fpm/pool.d/legacy.conf");
    let at = |line: usize| {
        c.problems
            .iter()
            .find(|p| p.file == legacy_file && p.line == line)
            .unwrap_or_else(|| panic!("no problem at legacy.conf:{line}: {:?}", c.problems))
    };
    assert!(at(5).message.contains("pm.max_children"));
    assert!(at(6).message.contains("request_terminate_timeout"));
    assert!(at(7).message.contains("key = value"));
    assert_eq!(c.problems.len(), 3, "{:?}", c.problems);
    // The rest of the broken pool is still read.
    let legacy = c.pool("legacy").unwrap();
    assert_eq!(
        legacy.listen,
        Some(BackendAddr::Tcp {
            host: None,
            port: 9000
        })
    );
    assert_eq!(legacy.max_children, None);
}

#[test]
fn relative_paths_use_the_prefix_and_defaults_apply() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("fpm.conf");
    std::fs::write(
        &main,
        "[global]\npid = run/fpm.pid\n[a]\nlisten = a.sock\nslowlog = log/$pool.slow\n[b]\nprefix = /srv/b\nlisten = b.sock\n[c]\npm = static\n",
    )
    .unwrap();
    // Without -p, php-fpm 8.2 resolves against /usr and logs to /var/log/php-fpm.log
    // (checked with `php-fpm8.2 -tt`).
    let c = PhpFpmConfig::load(&main).unwrap();
    assert_eq!(
        c.global.error_log,
        FpmLogTarget::File("/var/log/php-fpm.log".into())
    );
    assert_eq!(c.global.pid, Some("/usr/run/fpm.pid".into()));
    let a = c.pool("a").unwrap();
    assert_eq!(a.listen, Some(BackendAddr::Unix("/usr/a.sock".into())));
    assert_eq!(a.slowlog, Some("/usr/log/a.slow".into()));
    assert_eq!(
        c.pool("b").unwrap().listen,
        Some(BackendAddr::Unix("/srv/b/b.sock".into()))
    );
    assert!(c
        .problems
        .iter()
        .any(|p| p.message.contains("[c] has no listen")));
    let p = PhpFpmConfig::load_with_prefix(&main, Path::new("/opt/fpm")).unwrap();
    assert_eq!(
        p.pool("a").unwrap().listen,
        Some(BackendAddr::Unix("/opt/fpm/a.sock".into()))
    );
    std::fs::write(&main, "[global]\nerror_log = syslog\n").unwrap();
    assert_eq!(
        PhpFpmConfig::load(&main).unwrap().global.error_log,
        FpmLogTarget::Syslog
    );
}

#[test]
fn include_cycles_and_missing_files_do_not_hang_or_fail() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("fpm.conf");
    let inc = dir.path().join("inc.conf");
    std::fs::write(&main, format!("include={}\n", inc.display())).unwrap();
    std::fs::write(
        &inc,
        format!("[p]\nlisten = 9100\ninclude={}\n", main.display()),
    )
    .unwrap();
    let c = PhpFpmConfig::load(&main).unwrap();
    assert_eq!(c.pools.len(), 1);
    assert!(c
        .problems
        .iter()
        .any(|p| p.message.contains("included twice")));
    assert!(PhpFpmConfig::load(&dir.path().join("missing.conf"))
        .unwrap_err()
        .to_string()
        .contains("missing.conf"));
}

#[test]
fn pools_serving_an_upstream() {
    let (_dir, main) = debian_tree();
    let c = PhpFpmConfig::load(&main).unwrap();
    let names = |up: &str| -> Vec<String> {
        c.pools_serving(&BackendAddr::parse_upstream(up).unwrap())
            .map(|p| p.name.clone())
            .collect()
    };
    assert_eq!(names("unix:/run/php/php8.2-fpm.sock"), ["www"]);
    assert_eq!(names("unix:/var/run/php/php8.2-fpm.sock"), ["www"]);
    // `listen = 9000` is every address.
    assert_eq!(names("127.0.0.1:9000"), ["legacy"]);
    assert_eq!(names("127.0.0.1:9001"), ["shop"]);
    assert_eq!(names("localhost:9001"), ["shop"]);
    assert!(names("10.0.0.7:9001").is_empty());
    assert!(names("unix:/run/php/other.sock").is_empty());
}

#[test]
fn finds_installed_configs_under_an_etc_root() {
    let (dir, main) = debian_tree();
    let empty_proc = tempfile::tempdir().unwrap();
    let procs = ProcessTable::read(empty_proc.path());
    let found = find_php_fpm_configs(&procs, &dir.path().join("etc"));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, main);
    assert_eq!(found[0].origin, ConfigOrigin::Installed);
}

#[test]
fn finds_a_running_masters_config_from_its_title() {
    let (dir, main) = debian_tree();
    let proc_root = tempfile::tempdir().unwrap();
    let pdir = proc_root.path().join("4242");
    std::fs::create_dir_all(&pdir).unwrap();
    // stat and cmdline as captured from a php-fpm 8.2 master on the lab host.
    std::fs::write(pdir.join("stat"), "4242 (php-fpm8.2) S 1 4242 4242 0 -1 4194304 2170 327 5 0 1 0 0 0 20 0 1 0 270811 206446592 5160 18446744073709551615 0 0 0 0 0 0 0 4096 84487 1 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n").unwrap();
    std::fs::write(
        pdir.join("cmdline"),
        format!(
            "php-fpm: master process ({})\0\0\0\0\0\0",
            "/opt/other/php-fpm.conf"
        ),
    )
    .unwrap();
    let procs = ProcessTable::read(proc_root.path());
    let found = find_php_fpm_configs(&procs, &dir.path().join("etc"));
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].path, PathBuf::from("/opt/other/php-fpm.conf"));
    assert_eq!(found[0].origin, ConfigOrigin::Running { pid: 4242 });
    assert_eq!(found[1].path, main);
}
