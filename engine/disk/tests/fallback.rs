//! Environments that rule the `io_uring` disk out get a clear error, and `DiskChoice::Auto` falls
//! back to the sync disk with that error as its warning. Limits that would leak into other
//! tests (resource limits, seccomp filters) are set in a child process that re-runs just the
//! one test.

mod common;

use std::path::Path;

use chronon_disk::{
    AnyDisk, DiskChoice, DiskOpenError, IoUringDisk, create_data_file, memlock_required_bytes, open,
};
use chronon_engine::disk::SECTOR_SIZE;
use common::{
    TEST_TIME_LIMIT, TempDir, Watchdog, child_done, is_child, pattern, read_ok, run_child,
    write_durably,
};

const DISK_BYTES: u64 = 16 * SECTOR_SIZE as u64;

/// Opens `path` with `Auto` and checks it fell back to a working sync disk, warning with an
/// error that `is_expected` accepts. Returns the warning's message.
fn check_auto_falls_back(path: &Path, is_expected: fn(&DiskOpenError) -> bool) -> String {
    let (mut disk, warning) = open(path, DiskChoice::Auto).expect("Auto opens some disk");
    assert!(
        matches!(disk, AnyDisk::Sync(_)),
        "Auto kept {}",
        disk.kind_name()
    );
    let warning = warning.expect("a fallback comes with a warning");
    assert!(is_expected(&warning), "unexpected warning {warning:?}");
    assert!(warning.is_fallback_cause());
    write_durably(&mut disk, 0, pattern(1, SECTOR_SIZE));
    assert_eq!(
        read_ok(&mut disk, 0, SECTOR_SIZE),
        pattern(1, SECTOR_SIZE).as_slice()
    );
    warning.to_string()
}

/// A fresh data file in its own temporary directory under `parent`.
fn data_file_in(parent: &Path, label: &str) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new_in(parent, label);
    let path = dir.file("data.chronon");
    create_data_file(&path, DISK_BYTES).expect("create the data file");
    (dir, path)
}

fn is_tmpfs(mount_point: &str) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&mount_point) && fields.get(2) == Some(&"tmpfs")
    })
}

// Proves a data file on tmpfs is refused by the io_uring disk with `DirectIoUnsupported`
// (tmpfs has no direct I/O: older kernels reject O_DIRECT with EINVAL, newer ones accept the
// flag and serve it from memory), that `DiskChoice::IoUring` reports it instead of falling
// back, and that `Auto` falls back to a working sync disk whose warning names O_DIRECT and the
// fix. Uses a real file in /dev/shm; skipped with a note where /dev/shm is not tmpfs.
#[test]
fn tmpfs_is_refused_and_auto_falls_back() {
    let _watchdog = Watchdog::start("tmpfs_is_refused", TEST_TIME_LIMIT);
    if !is_tmpfs("/dev/shm") {
        println!("SKIPPED tmpfs_is_refused_and_auto_falls_back: /dev/shm is not a tmpfs here");
        return;
    }
    let (_dir, path) = data_file_in(Path::new("/dev/shm"), "tmpfs");
    let is_direct_io = |error: &DiskOpenError| matches!(error, DiskOpenError::DirectIoUnsupported { path: named } if named == &path);
    let error = IoUringDisk::open(&path).expect_err("tmpfs has no direct I/O");
    assert!(is_direct_io(&error), "got {error:?}");
    let error = open(&path, DiskChoice::IoUring).expect_err("IoUring does not fall back");
    assert!(is_direct_io(&error), "got {error:?}");
    let message = check_auto_falls_back(&path, |e| {
        matches!(e, DiskOpenError::DirectIoUnsupported { .. })
    });
    assert!(message.contains("O_DIRECT"), "{message}");
    assert!(
        message.contains("ext4 or xfs") && message.contains("--disk sync"),
        "{message}"
    );
}

// Proves the memlock check: in a child process the soft RLIMIT_MEMLOCK is set to exactly the
// ring's estimated need (opens), one byte less (refused with `MemlockTooLow` naming both
// numbers, before io_uring is touched), and 0 (refused, and `Auto` falls back to a working
// sync disk with a warning naming the limit and the fix).
#[test]
fn memlock_too_low_is_refused_and_auto_falls_back() {
    const TEST: &str = "memlock_too_low_is_refused_and_auto_falls_back";
    if !is_child(TEST) {
        run_child(TEST);
        return;
    }
    let (_dir, path) = data_file_in(&std::env::temp_dir(), "memlock");
    let required = memlock_required_bytes();
    assert!(
        required >= 256 * 64,
        "the estimate must cover at least the SQE array"
    );
    set_memlock_soft_limit(required);
    drop(IoUringDisk::open(&path).expect("a limit equal to the need is enough"));
    for limit in [required - 1, 0] {
        set_memlock_soft_limit(limit);
        match IoUringDisk::open(&path) {
            Err(DiskOpenError::MemlockTooLow {
                limit: seen,
                required: needed,
            }) => {
                assert_eq!((seen, needed), (limit, required));
            }
            other => panic!("memlock limit {limit}: expected MemlockTooLow, got {other:?}"),
        }
    }
    let message = check_auto_falls_back(&path, |e| {
        matches!(e, DiskOpenError::MemlockTooLow { limit: 0, .. })
    });
    assert!(
        message.contains("RLIMIT_MEMLOCK") && message.contains("ulimit -l"),
        "{message}"
    );
    child_done(TEST);
}

/// Sets the soft `RLIMIT_MEMLOCK` of this (child) process, keeping the hard limit.
#[allow(unsafe_code)]
fn set_memlock_soft_limit(bytes: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit that outlives the call.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut limit) };
    assert_eq!(status, 0, "getrlimit: {}", std::io::Error::last_os_error());
    limit.rlim_cur = bytes;
    // SAFETY: `limit` is a valid rlimit that outlives the call, which only reads it.
    let status = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const limit) };
    assert_eq!(status, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

// Proves a blocked io_uring (as a container's seccomp profile does it) is reported as
// `IoUringUnavailable` and `Auto` falls back to a working sync disk: in a child process, a
// seccomp filter makes io_uring_setup fail with EPERM, then the disk is opened. x86_64 only,
// since the filter names that architecture's syscall number.
#[test]
fn blocked_io_uring_is_refused_and_auto_falls_back() {
    const TEST: &str = "blocked_io_uring_is_refused_and_auto_falls_back";
    if !cfg!(target_arch = "x86_64") {
        println!("SKIPPED {TEST}: the seccomp filter is written for x86_64 only");
        return;
    }
    if !is_child(TEST) {
        run_child(TEST);
        return;
    }
    let (_dir, path) = data_file_in(&std::env::temp_dir(), "seccomp");
    seccomp::deny_io_uring_setup();
    match IoUringDisk::open(&path) {
        Err(DiskOpenError::IoUringUnavailable { reason }) => {
            assert!(reason.contains("Operation not permitted"), "{reason}");
        }
        other => panic!("expected IoUringUnavailable, got {other:?}"),
    }
    let message = check_auto_falls_back(&path, |e| {
        matches!(e, DiskOpenError::IoUringUnavailable { .. })
    });
    assert!(
        message.contains("seccomp") && message.contains("--disk sync"),
        "{message}"
    );
    child_done(TEST);
}

#[cfg(target_arch = "x86_64")]
mod seccomp {
    use std::mem::offset_of;

    /// `AUDIT_ARCH_X86_64`: `EM_X86_64` (62) with the 64-bit and little-endian flags.
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    /// `io_uring_setup`'s number on `x86_64`.
    const IO_URING_SETUP: u32 = 425;

    const _: () = assert!(libc::SYS_io_uring_setup == IO_URING_SETUP as libc::c_long);

    fn statement(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jump_if_equal(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        }
    }

    /// Installs, on this thread, a seccomp filter under which `io_uring_setup` fails with
    /// `EPERM` and every other system call is allowed.
    #[allow(unsafe_code)]
    pub fn deny_io_uring_setup() {
        let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let ret = libc::BPF_RET | libc::BPF_K;
        let mut filter = [
            statement(load, offset_of!(libc::seccomp_data, arch) as u32),
            // Another architecture's numbers mean other calls: allow (jump to the last line).
            jump_if_equal(AUDIT_ARCH_X86_64, 0, 3),
            statement(load, offset_of!(libc::seccomp_data, nr) as u32),
            jump_if_equal(IO_URING_SETUP, 0, 1),
            statement(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
            statement(ret, libc::SECCOMP_RET_ALLOW),
        ];
        let program = libc::sock_fprog {
            len: u16::try_from(filter.len()).expect("a short program"),
            filter: filter.as_mut_ptr(),
        };
        // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only; it is required
        // before an unprivileged process may install a filter.
        let status = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
        assert_eq!(
            status,
            0,
            "PR_SET_NO_NEW_PRIVS: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `program` points to `filter`, a valid BPF program of `len` instructions; both
        // outlive the call, and the kernel copies the program before returning.
        let status = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::c_ulong::from(libc::SECCOMP_MODE_FILTER),
                &raw const program,
            )
        };
        assert_eq!(
            status,
            0,
            "PR_SET_SECCOMP: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod seccomp {
    pub fn deny_io_uring_setup() {
        unreachable!("the test returns before installing a filter on this architecture");
    }
}
