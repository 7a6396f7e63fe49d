//! Every listener's busy port is a clear error, never a panic (issue 15): the binary is
//! started with one listener on a port this test holds, and must exit non-zero naming
//! the flag, the address and what to do. The rest listen on port 0.
//! Run: `cargo test -p server --test listeners`.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `socketswarm ARGS` (in a temp dir, fresh database) to its end; its exit status
/// and everything it printed. Fails the test if it is still running after 60 s.
fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_socketswarm"))
        .args(args)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "socketswarm {args:?} still ran with a busy port:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// Holds a port on loopback for as long as it lives.
fn held() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

fn assert_clear_error(args: &[&str], flag: &str, addr: &str, can_be_off: bool) {
    let (status, out) = run_to_exit(args);
    assert!(!status.success(), "{args:?} exited 0:\n{out}");
    assert!(!out.contains("panicked"), "{args:?} panicked:\n{out}");
    let said = format!("{flag} {addr}: could not listen: the address is already in use");
    assert!(out.contains(&said), "{args:?} did not say `{said}`:\n{out}");
    let hint = format!("`{flag} 127.0.0.1:0` takes any free port");
    assert!(
        out.contains(&hint),
        "{args:?} did not say what to do:\n{out}"
    );
    assert_eq!(
        out.contains(&format!("`{flag} off`")),
        can_be_off,
        "{args:?}: `off` offered exactly when the listener can be off:\n{out}"
    );
}

#[test]
fn serve_names_each_busy_listener() {
    let (_hold, busy) = held();
    let serve = |listen: &str, sandbox: &str, tls: &str| {
        [
            "serve",
            "--listen",
            listen,
            "--sandbox",
            sandbox,
            "--sandbox-tls",
            tls,
            "--database",
            "t.db",
        ]
        .map(str::to_string)
    };
    let free = "127.0.0.1:0";
    for (args, flag, can_be_off) in [
        (serve(&busy, free, free), "--listen", false),
        (serve(free, &busy, free), "--sandbox", true),
        // The case of issue 15: the default `--sandbox-tls` taken by another instance.
        (serve(free, free, &busy), "--sandbox-tls", true),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_clear_error(&args, flag, &busy, can_be_off);
    }
}

#[test]
fn target_names_each_busy_listener() {
    let (_hold, busy) = held();
    let free = "127.0.0.1:0";
    assert_clear_error(&["target", "--listen", &busy], "--listen", &busy, false);
    assert_clear_error(
        &["target", "--listen", free, "--tls-listen", &busy],
        "--tls-listen",
        &busy,
        false,
    );
    assert_clear_error(
        &[
            "target",
            "--listen",
            free,
            "--processes",
            "2",
            "--stats-listen",
            &busy,
        ],
        "--stats-listen",
        &busy,
        false,
    );
}
