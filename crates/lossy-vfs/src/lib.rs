//! Test support: an SQLite VFS that can lose power.
//!
//! [`install`] registers a VFS named `lossy` as the process's default VFS. It forwards every call
//! to the VFS that was the default before (`unix` on Linux), so SQLite behaves exactly as
//! usual, and it does three extra things for the files of a directory the test [`watch`]es:
//!
//! - **Durability model** (`track = true`). Every write, truncation and creation is recorded as
//!   *pending*; an `xSync` of a file moves that file's pending changes into its *durable image*.
//!   [`power_loss`] then replaces each file on disk by its durable image plus the pending changes
//!   the caller chooses to keep (none: a lost fsync drops the whole unsynced tail; all: only the
//!   process died, the OS page cache survived; or a random subset: a disk that reordered its
//!   writes). Durable images are kept in memory: meant for small test databases.
//! - **Crash point.** [`cut_after`] makes the N-th next mutating call (`xWrite`, `xTruncate`,
//!   `xSync`, `xDelete`) fail, and every mutating call after it: from there on nothing reaches
//!   the disk model, as if the machine had stopped at that instant. A call that returns `Ok` to
//!   the application after the cut is not "acknowledged": the process would never have seen it.
//! - **Read-only disk.** [`set_readonly`] makes writes, truncations and deletions fail with
//!   `SQLITE_READONLY` (what a read-only database looks like to SQLite) until it is turned off;
//!   [`refuse_writes`] does the same with any code (e.g. `SQLITE_IOERR_WRITE`: the `EROFS` of a
//!   file system remounted read-only).
//!
//! What the model assumes, following SQLite's own (<https://www.sqlite.org/atomiccommit.html>,
//! `unix` VFS): one `xWrite` is atomic (powersafe overwrite, as the `unix` VFS reports); `fsync`
//! of a file makes its content durable, not its directory entry; the `unix` VFS fsyncs the
//! directory when it first syncs a WAL or journal it created, so for those files a sync also
//! makes their existence durable, while a file never synced is lost entirely (its creation is
//! pending). The database file itself is created by the application before SQLite opens it:
//! a file that exists when the VFS first opens it is taken as durable with its content at that
//! moment. Deletions are taken as durable at once (lenient: a WAL is deleted only after a
//! complete checkpoint, so a resurrected one would hold frames already in the database). The
//! `-shm` wal-index is memory, never synced: [`power_loss`] deletes it (SQLite rebuilds it
//! from the WAL on the next open). Since the model holds durability, a tracked file's `xSync`
//! is not forwarded to the real disk (the tests stay fast on a shared machine).

use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use rusqlite::ffi;

/// The name the VFS is registered under.
pub const NAME: &CStr = c"lossy";

/// One recorded change of a file, not yet synced.
#[derive(Debug, Clone)]
enum Op {
    Create,
    Write { off: usize, data: Vec<u8> },
    Truncate(usize),
}

/// A file as the disk holds it: whether its directory entry exists, and its bytes.
#[derive(Debug, Clone, Default)]
struct Image {
    exists: bool,
    data: Vec<u8>,
}

impl Image {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Create => self.exists = true,
            Op::Write { off, data } => {
                let end = off + data.len();
                if self.data.len() < end {
                    self.data.resize(end, 0);
                }
                self.data[*off..end].copy_from_slice(data);
            }
            Op::Truncate(n) => self.data.resize(*n, 0),
        }
    }
}

/// The model of one file.
#[derive(Debug, Default)]
struct Tracked {
    durable: Image,
    pending: Vec<Op>,
    /// The file's length as the running system sees it (for `SQLITE_FCNTL_SIZE_HINT`, which
    /// the `unix` VFS may apply with an `ftruncate` of its own).
    len: usize,
    /// WAL or journal: the `unix` VFS fsyncs the directory when it syncs such a file it created.
    dirsync: bool,
}

impl Tracked {
    fn record(&mut self, op: Op) {
        match &op {
            Op::Create => self.len = 0,
            Op::Write { off, data } => self.len = self.len.max(off + data.len()),
            Op::Truncate(n) => self.len = *n,
        }
        self.pending.push(op);
    }

    /// `fsync` of this file.
    fn sync(&mut self) {
        let entry_pending = !self.durable.exists && !self.dirsync;
        let mut image = std::mem::take(&mut self.durable);
        for op in self.pending.drain(..) {
            image.apply(&op);
        }
        if entry_pending {
            // Its content is on disk, but not its name: still lost unless the entry persists.
            image.exists = false;
            self.pending.push(Op::Create);
        }
        self.durable = image;
    }
}

/// A watched directory.
#[derive(Debug, Default)]
struct Dir {
    track: bool,
    files: BTreeMap<PathBuf, Tracked>,
    open_handles: usize,
    mutating_calls: u64,
    cut_at: Option<u64>,
    crashed: bool,
    /// The name of the thread whose call the cut landed in.
    crash_thread: Option<String>,
    /// Writes, truncations and deletions fail with this code.
    refuse: Option<c_int>,
    refused: u64,
}

static DIRS: Mutex<BTreeMap<PathBuf, Dir>> = Mutex::new(BTreeMap::new());
/// The VFS `lossy` forwards to (set once by [`install`], never freed: VFS objects are static).
static ORIG: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(ptr::null_mut());
static INSTALL: Once = Once::new();

fn dirs() -> MutexGuard<'static, BTreeMap<PathBuf, Dir>> {
    DIRS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn canonical(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_owned())
}

/// Registers the `lossy` VFS as the default VFS of this process (once; later calls do nothing).
/// Call it before the first connection is opened.
///
/// # Panics
/// If SQLite has no default VFS or refuses the registration.
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` only reads SQLite's VFS list (it initialises the
        // library first if needed); the pointer it returns is a registered VFS, which lives
        // until it is unregistered, and nothing in this process unregisters it.
        let orig = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
        assert!(!orig.is_null(), "SQLite has no default VFS");
        ORIG.store(orig, Ordering::SeqCst);
        // SAFETY: `orig` is a valid, registered VFS (checked non-null above); we only read
        // two plain integer fields.
        let (orig_sz, orig_path) = unsafe { ((*orig).szOsFile, (*orig).mxPathname) };
        let sz = c_int::try_from(std::mem::size_of::<LossyFile>()).unwrap_or(c_int::MAX);
        let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: sz + orig_sz,
            mxPathname: orig_path,
            pNext: ptr::null_mut(),
            zName: NAME.as_ptr(),
            pAppData: ptr::null_mut(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: None,
            xDlError: None,
            xDlSym: None,
            xDlClose: None,
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: Some(x_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        }));
        // SAFETY: `vfs` is leaked, so it outlives every connection; its function pointers all
        // have the signatures SQLite expects (they are typed by the bindings), its name is a
        // static NUL-terminated string and `szOsFile` covers our handle plus the wrapped one.
        let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 1) };
        assert_eq!(rc, ffi::SQLITE_OK, "sqlite3_vfs_register failed");
    });
}

/// Watch the files directly inside `dir` (the database, its WAL and journals). With `track`,
/// their durability is modelled (see the crate documentation) and [`power_loss`] works; without,
/// only [`set_readonly`] and [`cut_after`] apply. Files already open stay unwatched.
pub fn watch(dir: &Path, track: bool) {
    dirs().insert(
        canonical(dir),
        Dir {
            track,
            ..Dir::default()
        },
    );
}

/// Stop watching `dir`: its files are plain files again.
pub fn unwatch(dir: &Path) {
    dirs().remove(&canonical(dir));
}

/// Everything written so far is on disk for good (as after the OS has written back its cache):
/// every pending change becomes durable.
pub fn settle(dir: &Path) {
    if let Some(d) = dirs().get_mut(&canonical(dir)) {
        for t in d.files.values_mut() {
            let mut image = std::mem::take(&mut t.durable);
            for op in t.pending.drain(..) {
                image.apply(&op);
            }
            t.durable = image;
        }
    }
}

/// The machine stops at the `n`-th next mutating call (`n = 1`: the very next one fails); replaces
/// a cut not reached yet.
pub fn cut_after(dir: &Path, n: u64) {
    if let Some(d) = dirs().get_mut(&canonical(dir)) {
        d.cut_at = Some(d.mutating_calls + n.max(1));
    }
}

/// Whether the cut has happened.
#[must_use]
pub fn crashed(dir: &Path) -> bool {
    dirs().get(&canonical(dir)).is_some_and(|d| d.crashed)
}

/// The name of the thread the cut landed in (`None` before the cut).
#[must_use]
pub fn crash_thread(dir: &Path) -> Option<String> {
    dirs()
        .get(&canonical(dir))
        .and_then(|d| d.crash_thread.clone())
}

/// Mutating calls seen so far in `dir` (writes, truncations, syncs, deletions).
#[must_use]
pub fn mutating_calls(dir: &Path) -> u64 {
    dirs().get(&canonical(dir)).map_or(0, |d| d.mutating_calls)
}

/// Turn the read-only disk on or off; returns the calls refused so far.
pub fn set_readonly(dir: &Path, on: bool) -> u64 {
    refuse_writes(dir, on.then_some(ffi::SQLITE_READONLY))
}

/// Make writes, truncations and deletions fail with `code` (`None`: they work again); returns
/// the calls refused so far.
pub fn refuse_writes(dir: &Path, code: Option<c_int>) -> u64 {
    dirs().get_mut(&canonical(dir)).map_or(0, |d| {
        d.refuse = code;
        d.refused
    })
}

/// What [`power_loss`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loss {
    /// Files rewritten from their durable image (or removed, if never durable).
    pub files: usize,
    /// Pending (unsynced) changes that survived, and that were lost.
    pub kept: usize,
    pub dropped: usize,
    /// Bytes of the lost writes.
    pub dropped_bytes: usize,
}

/// Power loss: every tracked file of `dir` becomes its durable image plus the pending changes
/// for which `keep` answers `true` (asked once per change, in the order they were made); the
/// `-shm` files are deleted. Afterwards `dir` is watched afresh (no cut, nothing recorded): the
/// files are taken as they are now on disk.
///
/// # Errors
/// A connection still has a file of `dir` open (close them all first: dropping the store after
/// the cut is what "the machine is off" means here), or the files cannot be rewritten.
pub fn power_loss(dir: &Path, keep: &mut dyn FnMut() -> bool) -> std::io::Result<Loss> {
    let key = canonical(dir);
    let mut all = dirs();
    let d = all
        .get_mut(&key)
        .ok_or_else(|| std::io::Error::other("directory not watched"))?;
    if d.open_handles > 0 {
        return Err(std::io::Error::other(format!(
            "{} files still open",
            d.open_handles
        )));
    }
    let mut loss = Loss::default();
    for (path, t) in std::mem::take(&mut d.files) {
        let mut image = t.durable;
        for op in &t.pending {
            if keep() {
                loss.kept += 1;
                image.apply(op);
            } else {
                loss.dropped += 1;
                if let Op::Write { data, .. } = op {
                    loss.dropped_bytes += data.len();
                }
            }
        }
        loss.files += 1;
        if image.exists {
            std::fs::write(&path, &image.data)?;
        } else if path.exists() {
            std::fs::remove_file(&path)?;
        }
    }
    for entry in std::fs::read_dir(&key)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with("-shm") {
            std::fs::remove_file(&path)?;
        }
    }
    let track = d.track;
    *d = Dir {
        track,
        ..Dir::default()
    };
    Ok(loss)
}

// ---------------------------------------------------------------------------------------------
// The VFS.

/// Our file handle. SQLite allocates `szOsFile` bytes for it: this struct, then the wrapped
/// VFS's own handle (`real` points there).
#[repr(C)]
struct LossyFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Set when the file is in a watched directory (owned: freed in `xClose`), else null.
    info: *mut Info,
}

#[derive(Debug)]
struct Info {
    dir: PathBuf,
    path: PathBuf,
}

fn orig() -> *mut ffi::sqlite3_vfs {
    ORIG.load(Ordering::SeqCst)
}

/// What a mutating call may do, decided under the lock.
enum Gate {
    /// Watched: forward, then record in the model (if tracked).
    Go { track: bool },
    /// Refused with this code.
    Fail(c_int),
}

/// Counts a mutating call of a watched file and applies the cut and the refused writes (not to
/// syncs: a read-only disk has nothing dirty to flush).
fn gate(d: &mut Dir, crash_code: c_int, refusable: bool) -> Gate {
    if d.crashed {
        return Gate::Fail(crash_code);
    }
    if let Some(code) = d.refuse
        && refusable
    {
        d.refused += 1;
        return Gate::Fail(code);
    }
    d.mutating_calls += 1;
    if d.cut_at.is_some_and(|c| d.mutating_calls >= c) {
        d.crashed = true;
        d.crash_thread = Some(
            std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_owned(),
        );
        return Gate::Fail(crash_code);
    }
    Gate::Go { track: d.track }
}

/// The file's directory state and path, when it is watched.
///
/// # Safety
/// `file` must be a handle opened by `x_open` (its `info` is null or a live `Info`).
unsafe fn info<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a Info> {
    let f = file.cast::<LossyFile>();
    // SAFETY: per the contract `file` is our `LossyFile`, initialised by `x_open`; `info` is
    // either null or a `Box<Info>` we own until `x_close`, so the reference is valid while
    // SQLite may still call methods on this handle.
    unsafe { (*f).info.as_ref() }
}

/// The wrapped VFS's handle.
///
/// # Safety
/// As [`info`].
unsafe fn real(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: per the contract `file` is our initialised `LossyFile`.
    unsafe { (*file.cast::<LossyFile>()).real }
}

/// Calls method `$m` of the wrapped handle `$real`, or answers `$none` when it has none.
macro_rules! forward {
    ($real:expr, $m:ident, $none:expr $(, $arg:expr)*) => {{
        let real = $real;
        // SAFETY: `real` was opened successfully by the wrapped VFS, so its `pMethods` points
        // to that VFS's static method table, valid until `xClose`.
        let method = unsafe { (*(*real).pMethods).$m };
        match method {
            // SAFETY: the method of the wrapped handle, called with that handle and the
            // arguments SQLite gave us for the same method (so SQLite's own contract holds).
            Some(m) => unsafe { m(real $(, $arg)*) },
            None => $none,
        }
    }};
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let f = file.cast::<LossyFile>();
    // SAFETY: SQLite gives us `szOsFile` writable bytes at `file`, 8-byte aligned; our struct
    // (three pointers, 24 bytes) comes first and the wrapped handle right after it, so the
    // offset stays within the allocation and keeps pointer alignment.
    let real = unsafe { file.cast::<u8>().add(std::mem::size_of::<LossyFile>()) }
        .cast::<ffi::sqlite3_file>();
    // SAFETY: `f` points to writable memory for a `LossyFile` (see above). Until the open has
    // succeeded, `pMethods` stays null, so SQLite will not call our methods on it.
    unsafe {
        ptr::write(
            f,
            LossyFile {
                base: ffi::sqlite3_file {
                    pMethods: ptr::null(),
                },
                real,
                info: ptr::null_mut(),
            },
        );
    }
    let path = if z_name.is_null() {
        None
    } else {
        // SAFETY: a non-null `zName` is a NUL-terminated path owned by SQLite for the duration
        // of the open (and beyond, but we copy it).
        Some(PathBuf::from(
            unsafe { CStr::from_ptr(z_name) }.to_string_lossy().as_ref(),
        ))
    };
    let existed = path.as_ref().is_some_and(|p| p.exists());
    // SAFETY: the wrapped VFS is registered and static; `real` is `szOsFile(orig)` bytes of
    // memory it may initialise; the other arguments are SQLite's own (the name pointer is
    // passed as is, so URI parameters after it stay reachable).
    let rc = unsafe {
        match (*orig()).xOpen {
            Some(open) => open(orig(), z_name, real, flags, out_flags),
            None => ffi::SQLITE_CANTOPEN,
        }
    };
    // SAFETY: the wrapped VFS has written `real.pMethods` (null or valid) even on failure.
    let real_methods = unsafe { (*real).pMethods };
    if rc != ffi::SQLITE_OK || real_methods.is_null() {
        if !real_methods.is_null() {
            // A failed open that left a handle: close it (SQLite will not, ours stays null).
            let _ = forward!(real, xClose, ffi::SQLITE_OK);
        }
        return if rc == ffi::SQLITE_OK {
            ffi::SQLITE_CANTOPEN
        } else {
            rc
        };
    }
    let mut info = ptr::null_mut();
    if let Some(path) = path
        && let Some(dir) = path.parent().map(canonical)
    {
        let mut all = dirs();
        if let Some(d) = all.get_mut(&dir) {
            d.open_handles += 1;
            if d.track {
                let t = d.files.entry(path.clone()).or_insert_with(|| {
                    let data = if existed {
                        std::fs::read(&path).unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    Tracked {
                        len: data.len(),
                        durable: Image {
                            exists: existed,
                            data,
                        },
                        ..Tracked::default()
                    }
                });
                if flags
                    & (ffi::SQLITE_OPEN_WAL
                        | ffi::SQLITE_OPEN_MAIN_JOURNAL
                        | ffi::SQLITE_OPEN_SUPER_JOURNAL)
                    != 0
                {
                    t.dirsync = true;
                }
                if !existed && flags & ffi::SQLITE_OPEN_CREATE != 0 {
                    t.record(Op::Create);
                }
            }
            info = Box::into_raw(Box::new(Info { dir, path }));
        }
    }
    // SAFETY: `f` was initialised above; from here SQLite may call our methods on it.
    unsafe {
        (*f).info = info;
        (*f).base.pMethods = &raw const IO_METHODS;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls xClose once, on a handle our xOpen opened successfully.
    let real = unsafe { real(file) };
    let rc = forward!(real, xClose, ffi::SQLITE_OK);
    let f = file.cast::<LossyFile>();
    // SAFETY: `info` is null or the `Box<Info>` made in `x_open`; taking it out and freeing it
    // once is sound since SQLite never uses a handle after xClose.
    let info = unsafe { std::mem::replace(&mut (*f).info, ptr::null_mut()) };
    if !info.is_null() {
        // SAFETY: see above: this is the unique owner of the box.
        let info = unsafe { Box::from_raw(info) };
        if let Some(d) = dirs().get_mut(&info.dir) {
            d.open_handles = d.open_handles.saturating_sub(1);
        }
    }
    rc
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(real, xRead, ffi::SQLITE_IOERR_READ, buf, amt, off)
}

/// Runs a mutating call: the gate, then the call, then (if it succeeded) the record.
///
/// # Safety
/// `file` is a handle opened by `x_open`.
unsafe fn mutate(
    file: *mut ffi::sqlite3_file,
    crash_code: c_int,
    call: impl FnOnce() -> c_int,
    record: impl FnOnce(&mut Tracked),
) -> c_int {
    // SAFETY: per the contract.
    let Some(info) = (unsafe { info(file) }) else {
        return call();
    };
    // The lock is held across the call so that the model sees writes in the order the disk
    // does (the tests are small; contention does not matter).
    let mut all = dirs();
    let Some(d) = all.get_mut(&info.dir) else {
        drop(all);
        return call();
    };
    // Syncs are never refused (see `gate`).
    match gate(d, crash_code, crash_code != ffi::SQLITE_IOERR_FSYNC) {
        Gate::Fail(rc) => rc,
        Gate::Go { track } => {
            let rc = call();
            if rc == ffi::SQLITE_OK
                && track
                && let Some(t) = d.files.get_mut(&info.path)
            {
                record(t);
            }
            rc
        }
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    let call = || forward!(real, xWrite, ffi::SQLITE_IOERR_WRITE, buf, amt, off);
    let record = |t: &mut Tracked| {
        let len = usize::try_from(amt).unwrap_or(0);
        // SAFETY: SQLite's xWrite contract: `buf` holds `amt` readable bytes for this call.
        let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }.to_vec();
        t.record(Op::Write {
            off: usize::try_from(off).unwrap_or(0),
            data,
        });
    };
    // SAFETY: `file` is our handle (see above).
    unsafe { mutate(file, ffi::SQLITE_IOERR_WRITE, call, record) }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    let call = || forward!(real, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size);
    let record = |t: &mut Tracked| t.record(Op::Truncate(usize::try_from(size).unwrap_or(0)));
    // SAFETY: `file` is our handle.
    unsafe { mutate(file, ffi::SQLITE_IOERR_TRUNCATE, call, record) }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    // SAFETY: as above.
    let tracked = unsafe { info(file) }
        .and_then(|i| dirs().get(&i.dir).map(|d| d.track))
        .unwrap_or(false);
    if tracked {
        // The model is the disk: the real fsync is skipped (fast tests); the gate still counts
        // the call and may cut there.
        // SAFETY: `file` is our handle.
        return unsafe {
            mutate(
                file,
                ffi::SQLITE_IOERR_FSYNC,
                || ffi::SQLITE_OK,
                Tracked::sync,
            )
        };
    }
    let call = || forward!(real, xSync, ffi::SQLITE_IOERR_FSYNC, flags);
    // SAFETY: `file` is our handle.
    unsafe { mutate(file, ffi::SQLITE_IOERR_FSYNC, call, |_| {}) }
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(real, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, lock: c_int) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(real, xLock, ffi::SQLITE_IOERR_LOCK, lock)
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, lock: c_int) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(real, xUnlock, ffi::SQLITE_IOERR_UNLOCK, lock)
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(
        real,
        xCheckReservedLock,
        ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
        out
    )
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    let rc = forward!(real, xFileControl, ffi::SQLITE_NOTFOUND, op, arg);
    if op == ffi::SQLITE_FCNTL_SIZE_HINT && rc == ffi::SQLITE_OK {
        // The `unix` VFS may grow the file with an `ftruncate` of its own (memory-mapped
        // databases): record the new length, or the model would be shorter than the disk.
        let mut size: ffi::sqlite3_int64 = 0;
        if forward!(real, xFileSize, ffi::SQLITE_IOERR_FSTAT, &raw mut size) == ffi::SQLITE_OK {
            let size = usize::try_from(size).unwrap_or(0);
            // SAFETY: `file` is our handle.
            if let Some(info) = unsafe { info(file) }
                && let Some(d) = dirs().get_mut(&info.dir)
                && d.track
                && !d.crashed
                && let Some(t) = d.files.get_mut(&info.path)
                && size > t.len
            {
                t.record(Op::Truncate(size));
            }
        }
    }
    rc
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(real, xSectorSize, 4096)
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(real, xDeviceCharacteristics, 0)
}

unsafe extern "C" fn x_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(
        real,
        xShmMap,
        ffi::SQLITE_IOERR_SHMMAP,
        region,
        size,
        extend,
        out
    )
}

unsafe extern "C" fn x_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(real, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
}

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(real, xShmBarrier, ());
}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(real, xShmUnmap, ffi::SQLITE_OK, delete)
}

unsafe extern "C" fn x_fetch(
    file: *mut ffi::sqlite3_file,
    off: ffi::sqlite3_int64,
    amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    // SAFETY: xFetch's contract: `out` is writable; null means "no mapping, read instead"
    // (the wrapped method overwrites it when it maps).
    unsafe { *out = ptr::null_mut() };
    forward!(real, xFetch, ffi::SQLITE_OK, off, amt, out)
}

unsafe extern "C" fn x_unfetch(
    file: *mut ffi::sqlite3_file,
    off: ffi::sqlite3_int64,
    page: *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls methods only on handles our xOpen opened.
    let real = unsafe { real(file) };
    forward!(real, xUnfetch, ffi::SQLITE_OK, off, page)
}

// The VFS methods other than xOpen and xDelete: forwarded with the wrapped VFS as their object.

/// Calls method `$m` of the wrapped VFS, or answers `$none`.
macro_rules! forward_vfs {
    ($m:ident, $none:expr $(, $arg:expr)*) => {{
        let orig = orig();
        // SAFETY: `orig` is the registered default VFS found by `install` (static).
        let method = unsafe { (*orig).$m };
        match method {
            // SAFETY: the wrapped VFS's method with its own object and SQLite's arguments.
            Some(m) => unsafe { m(orig $(, $arg)*) },
            None => $none,
        }
    }};
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    let call = || forward_vfs!(xDelete, ffi::SQLITE_IOERR_DELETE, z_name, sync_dir);
    if z_name.is_null() {
        return call();
    }
    // SAFETY: `zName` is a NUL-terminated path owned by SQLite during the call.
    let path = PathBuf::from(unsafe { CStr::from_ptr(z_name) }.to_string_lossy().as_ref());
    let Some(dir) = path.parent().map(canonical) else {
        return call();
    };
    let mut all = dirs();
    let Some(d) = all.get_mut(&dir) else {
        drop(all);
        return call();
    };
    match gate(d, ffi::SQLITE_IOERR_DELETE, true) {
        Gate::Fail(rc) => rc,
        Gate::Go { .. } => {
            let rc = call();
            if rc == ffi::SQLITE_OK {
                // Taken as durable at once (see the crate documentation).
                d.files.remove(&path);
            }
            rc
        }
    }
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    forward_vfs!(xAccess, ffi::SQLITE_IOERR_ACCESS, z_name, flags, out)
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    z_name: *const c_char,
    n_out: c_int,
    z_out: *mut c_char,
) -> c_int {
    forward_vfs!(xFullPathname, ffi::SQLITE_CANTOPEN, z_name, n_out, z_out)
}

unsafe extern "C" fn x_randomness(
    _vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    forward_vfs!(xRandomness, 0, n, out)
}

unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    forward_vfs!(xSleep, 0, micros)
}

unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    forward_vfs!(xCurrentTime, ffi::SQLITE_ERROR, out)
}

unsafe extern "C" fn x_get_last_error(
    _vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    forward_vfs!(xGetLastError, 0, n, out)
}

unsafe extern "C" fn x_current_time_int64(
    _vfs: *mut ffi::sqlite3_vfs,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    forward_vfs!(xCurrentTimeInt64, ffi::SQLITE_ERROR, out)
}
