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
//! watches); others are opened each time, as without a cache.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Files a granted directory keeps open at most; past this, others are
/// opened per request (each cached file holds a descriptor and a watch).
const MAX_CACHED: usize = 256;

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
}

impl<M: Clone> Default for FileCache<M> {
    fn default() -> Self {
        FileCache { state: Mutex::new(State { watcher: None, files: HashMap::new() }) }
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
        if state.files.len() >= MAX_CACHED {
            return None;
        }
        // Watch the directories first: whatever changes after this is
        // queued, including between the open below and the insert.
        if state.watch_directories(dir, rest).is_err() {
            return None;
        }
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let file = match rustix::fs::openat2(dir, rest, flags, Mode::empty(), resolve) {
            Ok(fd) => File::from(fd),
            // A symlink on the path (ELOOP), or something only the usual
            // open can explain: leave it to that.
            Err(_) => return None,
        };
        let (metadata, regular) = match stat(&file) {
            Ok(found) => found,
            Err(error) => return Some(Err(error)),
        };
        let cached = CachedFile { file: Arc::new(file), metadata };
        if regular && state.watch_file(&cached.file).is_ok() {
            state.files.insert(rest.to_path_buf(), cached.clone());
        }
        Some(Ok(cached))
    }
}

impl<M> State<M> {
    /// Reads the watcher's queue; any event empties the cache.
    fn forget_if_changed(&mut self) {
        let Some(watcher) = &self.watcher else { return };
        let mut events = [0u8; 1024];
        match rustix::io::read(watcher, &mut events) {
            Err(rustix::io::Errno::AGAIN) => {}
            // Events, or a watcher that no longer works: start over.
            _ => {
                self.watcher = None;
                self.files.clear();
            }
        }
    }

    fn watcher(&mut self) -> std::io::Result<&OwnedFd> {
        if self.watcher.is_none() {
            self.watcher = Some(inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?);
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
