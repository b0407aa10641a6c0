//! Every real disk passes the engine's shared disk conformance suite on real files.

mod common;

use std::path::{Path, PathBuf};

use chronon_disk::{
    AnyDisk, DiskChoice, DiskOpenError, IoUringDisk, SyncDisk, create_data_file, open,
};
use chronon_engine::disk::VirtualDisk;
use chronon_engine::disk::conformance::{DiskHarness, run_all};
use common::{TEST_TIME_LIMIT, TempDir, Watchdog};

/// Makes each disk the suite asks for from a fresh data file in a temporary directory, and
/// reopens it the way a restarted process would: close the disk, open the file again.
struct FileHarness<D> {
    dir: TempDir,
    files_created: u64,
    /// The file of the disk created last; the suite only ever reopens that one.
    current: Option<PathBuf>,
    open: fn(&Path) -> Result<D, DiskOpenError>,
}

impl<D> FileHarness<D> {
    fn new(label: &str, open: fn(&Path) -> Result<D, DiskOpenError>) -> FileHarness<D> {
        FileHarness {
            dir: TempDir::new(label),
            files_created: 0,
            current: None,
            open,
        }
    }
}

impl<D: VirtualDisk> DiskHarness for FileHarness<D> {
    type Disk = D;

    fn create(&mut self, size: u64) -> D {
        self.files_created += 1;
        let path = self
            .dir
            .file(&format!("disk-{}.chronon", self.files_created));
        create_data_file(&path, size).expect("create the data file");
        let disk = (self.open)(&path).expect("open the fresh data file");
        self.current = Some(path);
        disk
    }

    fn reopen(&mut self, disk: D) -> D {
        assert_eq!(
            disk.in_flight(),
            0,
            "the suite reopens only after a clean stop"
        );
        drop(disk);
        let path = self.current.as_ref().expect("reopen follows create");
        (self.open)(path).expect("reopen the data file")
    }
}

fn open_auto(path: &Path) -> Result<AnyDisk, DiskOpenError> {
    open(path, DiskChoice::Auto).map(|(disk, _warning)| disk)
}

// Proves SyncDisk meets the seam's contract (and carries the journal) on a real file, by
// running the whole shared suite against fresh O_DSYNC data files.
#[test]
fn sync_disk_conforms() {
    let _watchdog = Watchdog::start("sync_disk_conforms", TEST_TIME_LIMIT);
    run_all(&mut FileHarness::new("conformance-sync", SyncDisk::open));
}

// Proves IoUringDisk meets the same contract, including the barrier's completion coming after
// the writes it covers and barriered data surviving a close and reopen, by running the shared
// suite against fresh O_DIRECT data files in the temp directory (ext4 here).
#[test]
fn io_uring_disk_conforms() {
    let _watchdog = Watchdog::start("io_uring_disk_conforms", TEST_TIME_LIMIT);
    run_all(&mut FileHarness::new(
        "conformance-uring",
        IoUringDisk::open,
    ));
}

// Proves whatever `DiskChoice::Auto` picks on this machine conforms too, through the `AnyDisk`
// wrapper the node uses.
#[test]
fn auto_disk_conforms() {
    let _watchdog = Watchdog::start("auto_disk_conforms", TEST_TIME_LIMIT);
    run_all(&mut FileHarness::new("conformance-auto", open_auto));
}
