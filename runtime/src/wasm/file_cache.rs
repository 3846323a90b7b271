//! The open-file cache of a read-only granted directory: files opened for
//! `canto:http/files` stay open with their metadata, so a request for a
//! file already served costs no `open`, `stat` or `close`.
//!
//! It is never stale. Every directory on a cached file's path and the file
//! itself are watched with inotify, and the kernel queues an event during
//! the call that changes them (a rename over the file, a write, a `touch`,
//! a deletion, a directory moved away). Before a cached file is used the
//! queue is read, and any event at all empties the cache, so a request
//! that starts after a change returns sees it. Only paths without symlinks
//! are cached (a symlink's target could change under a directory nobody
//! watches), and only on local filesystems inotify sees every change of
//! (ext4, XFS, Btrfs, tmpfs, …; not NFS or FUSE); others are opened each
//! time, as without a cache.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Files a granted directory keeps open at most; past this, others are
/// opened per request (each cached file holds a descriptor and a watch).
const MAX_CACHED: usize = 256;

/// Descriptors all caches together hold at most (files and watchers), or
/// an eighth of the descriptor limit when that is less, so many mounts
/// cannot crowd out connections: the connection cap leaves room for them.
/// Past it a cache stops growing.
const MAX_DESCRIPTORS: usize = 1024;
static DESCRIPTORS: AtomicUsize = AtomicUsize::new(0);
static BUDGET: AtomicUsize = AtomicUsize::new(MAX_DESCRIPTORS);

/// The caches' share of a descriptor limit; the connection cap leaves it.
pub fn budget_for(descriptor_limit: Option<u64>) -> usize {
    let eighth = descriptor_limit.map(|limit| usize::try_from(limit / 8).unwrap_or(usize::MAX));
    eighth.map_or(MAX_DESCRIPTORS, |eighth| eighth.min(MAX_DESCRIPTORS))
}

/// Sets the caches' budget for the process's descriptor limit.
pub fn set_budget(descriptor_limit: Option<u64>) {
    BUDGET.store(budget_for(descriptor_limit), Ordering::Relaxed);
}

/// Takes one descriptor from the server-wide budget, if any is left.
fn take_descriptor() -> bool {
    let budget = BUDGET.load(Ordering::Relaxed);
    DESCRIPTORS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| (held < budget).then_some(held + 1)).is_ok()
}

fn give_back_descriptors(count: usize) {
    DESCRIPTORS.fetch_sub(count, Ordering::Relaxed);
}

/// Changes to a watched directory that can change what a path names.
fn directory_changes() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::ATTRIB
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
}

/// Changes to a cached file's contents or metadata.
fn file_changes() -> WatchFlags {
    WatchFlags::MODIFY | WatchFlags::ATTRIB | WatchFlags::CLOSE_WRITE | WatchFlags::DELETE_SELF | WatchFlags::MOVE_SELF
}

/// A cached file: the open file, shared by every response sending it, and
/// what `stat` said when it was opened.
#[derive(Clone)]
pub struct CachedFile<M> {
    pub file: Arc<File>,
    pub metadata: M,
}

/// One granted directory's cache; `M` is the metadata kept with a file.
pub struct FileCache<M> {
    state: Mutex<State<M>>,
}

struct State<M> {
    /// Created on the first miss, dropped (taking its watches with it)
    /// whenever anything changes.
    watcher: Option<OwnedFd>,
    files: HashMap<PathBuf, CachedFile<M>>,
    /// `openat2` is missing (Linux before 5.6) or refused (seccomp): no
    /// caching at all.
    unsupported: bool,
}

impl<M> Drop for State<M> {
    fn drop(&mut self) {
        self.forget_all();
    }
}

impl<M: Clone> Default for FileCache<M> {
    fn default() -> Self {
        FileCache { state: Mutex::new(State { watcher: None, files: HashMap::new(), unsupported: false }) }
    }
}

impl<M: Clone> FileCache<M> {
    /// The file at `rest` beneath `dir`, from the cache when nothing has
    /// changed since it was opened; else opened (and kept when it is a
    /// regular file on a path without symlinks). `None`: not cacheable
    /// here, open it the usual way.
    pub fn open(
        &self,
        dir: &File,
        rest: &Path,
        stat: impl FnOnce(&File) -> std::io::Result<(M, bool)>,
    ) -> Option<std::io::Result<CachedFile<M>>> {
        let Ok(mut state) = self.state.lock() else { return None };
        state.forget_if_changed();
        if let Some(cached) = state.files.get(rest) {
            return Some(Ok(cached.clone()));
        }
        if state.unsupported || state.files.len() >= MAX_CACHED || !plain_relative(rest) {
            return None;
        }
        // Watch the directories first: whatever changes after this is
        // queued, including between the open below and the insert.
        if state.watch_directories(dir, rest).is_err() {
            return None;
        }
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        let file = match rustix::fs::openat2(dir, rest, flags, Mode::empty(), resolve) {
            Ok(fd) => File::from(fd),
            // No openat2 (Linux before 5.6, or a seccomp filter).
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
                state.unsupported = true;
                state.forget_all();
                return None;
            }
            // A symlink or a mount on the path, or something only the
            // usual open can explain: leave it to that.
            Err(_) => return None,
        };
        // Watched before it is looked at: a write in between would
        // otherwise go unnoticed.
        let mut watched = take_descriptor();
        if watched && state.watch_file(&file).is_err() {
            give_back_descriptors(1);
            watched = false;
        }
        let (metadata, regular) = match stat(&file) {
            Ok(found) => found,
            Err(error) => {
                if watched {
                    give_back_descriptors(1);
                }
                return Some(Err(error));
            }
        };
        let cached = CachedFile { file: Arc::new(file), metadata };
        if watched && regular {
            state.files.insert(rest.to_path_buf(), cached.clone());
        } else if watched {
            give_back_descriptors(1); // a directory or device: its watch only costs a spurious event
        }
        Some(Ok(cached))
    }
}

/// Whether a cache on `dir` would see every change: a local filesystem
/// whose changes all pass through this kernel.
pub fn is_watchable(dir: &File) -> bool {
    const LOCAL: [u64; 7] = [
        0xEF53,      // ext2/3/4
        0x5846_5342, // XFS
        0x9123_683E, // Btrfs
        0x0102_1994, // tmpfs
        0xF2F5_2010, // F2FS
        0x2FC1_2FC1, // ZFS
        0x794C_7630, // overlayfs
    ];
    rustix::fs::fstatfs(dir).is_ok_and(|found| LOCAL.contains(&(found.f_type as u64)))
}

/// A path of plain names only: no `.`, `..`, empty or trailing component,
/// so one file has one key and every watch stays beneath the grant.
fn plain_relative(rest: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = rest.as_os_str().as_bytes();
    !bytes.is_empty() && bytes.split(|b| *b == b'/').all(|name| !name.is_empty() && name != b"." && name != b"..")
}

impl<M> State<M> {
    /// Reads the watcher's queue; any event empties the cache.
    fn forget_if_changed(&mut self) {
        let Some(watcher) = &self.watcher else { return };
        let mut events = [0u8; 1024];
        match rustix::io::read(watcher, &mut events) {
            Err(rustix::io::Errno::AGAIN) => {}
            // Events, or a watcher that no longer works: start over.
            _ => self.forget_all(),
        }
    }

    /// Closes every cached file and the watcher, giving their descriptors
    /// back to the budget.
    fn forget_all(&mut self) {
        let held = self.files.len() + usize::from(self.watcher.is_some());
        self.files.clear();
        if let Some(watcher) = self.watcher.take() {
            // Closing an inotify instance waits for the kernel to let go of
            // its watches, which can take milliseconds: not on a worker.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(watcher))),
                Err(_) => drop(watcher),
            }
        }
        give_back_descriptors(held);
    }

    fn watcher(&mut self) -> std::io::Result<&OwnedFd> {
        if self.watcher.is_none() {
            if !take_descriptor() {
                return Err(std::io::Error::other("the cache's descriptor budget is spent"));
            }
            match inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK) {
                Ok(watcher) => self.watcher = Some(watcher),
                Err(error) => {
                    give_back_descriptors(1);
                    return Err(error.into());
                }
            }
        }
        self.watcher.as_ref().ok_or_else(|| std::io::Error::other("no watcher"))
    }

    /// Watches `dir` and each directory between it and `rest`'s last
    /// component, reached through `dir`'s descriptor (not a path that
    /// could name another directory by now).
    fn watch_directories(&mut self, dir: &File, rest: &Path) -> std::io::Result<()> {
        let base = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let watcher = self.watcher()?.as_fd();
        inotify::add_watch(watcher, &base, directory_changes())?;
        let mut path = base;
        let mut components = rest.components().peekable();
        while let Some(component) = components.next() {
            if components.peek().is_none() {
                break; // the file itself
            }
            path.push(component);
            inotify::add_watch(watcher, &path, directory_changes() | WatchFlags::DONT_FOLLOW)?;
        }
        Ok(())
    }

    /// Watches the file as opened (its inode, whatever its name is now).
    fn watch_file(&mut self, file: &File) -> std::io::Result<()> {
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        inotify::add_watch(self.watcher()?.as_fd(), path.as_str(), file_changes())?;
        Ok(())
    }
}
