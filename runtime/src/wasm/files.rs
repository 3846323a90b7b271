//! The host side of `canto:http/files`: the directories granted to a mount,
//! opened once when it is mounted; files opened beneath them as WASI's
//! filesystem opens them (neither `..` nor a symlink leaves a grant); and
//! response bodies the server sends from those files without the bytes
//! passing through the module's memory: with `sendfile` on plain-text
//! HTTP/1.x ([`crate::sendfile`]), else read in large pieces. Small files
//! the open-file cache holds are kept in memory too ([`Kept`]).

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::p2::types::HostResponseOutparam;
use wasmtime_wasi_http::{FieldMap, WasiHttpView as _};

use super::bindings::imports::canto::http::files::{Error, Host, HostFile, Kind, Metadata, Part};
use super::file_cache::{self, FileCache};
use super::host_state::{InstanceState, RequestFacts};
use crate::config::Grants;
use crate::metrics::Metrics;
use crate::sendfile::{MAX_PLACEHOLDER, SendfileQueue};

pub use super::file_cache::{budget_for as cached_descriptors, set_budget as limit_cached_descriptors};

/// Bytes read (or handed to `sendfile`) from a file at a time for a
/// response body.
const PIECE: u64 = MAX_PLACEHOLDER as u64;
/// Reads up to this size run on the request's thread (a page-cache copy
/// costs less than a hand-off to the blocking pool); larger ones go there.
const READ_INLINE: u64 = 64 * 1024;

/// Regular files up to this size that the open-file cache holds are kept
/// in memory with it: their bytes go out with the response head in one
/// write, with no read or `sendfile` per request.
const KEEP_IN_MEMORY: u64 = 16 * 1024;
/// Bytes all kept files together hold at most; past it files are sent
/// from their descriptor as usual.
const KEPT_BUDGET: usize = 16 << 20;
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// How long an opened granted directory is trusted before the path is
/// looked at again: a directory replaced under its name (a release symlink
/// swapped) or created after the mount is picked up within this.
const RECHECK_MS: u64 = 1000;

/// A mount's granted directories, each opened once, longest path first so
/// that a nested grant wins; and WASI's preopens of the same directories,
/// which each instance gets a copy of (no `open` per request).
#[derive(Default)]
pub struct GrantedDirs {
    dirs: Vec<GrantedDir>,
    /// The grants in the operator's order, as WASI lists them to the guest.
    preopen_order: Vec<(PathBuf, FsPerms)>,
    preopens: ArcSwap<Preopens>,
    module: String,
}

/// WASI's preopens, and the directories open (for `canto:http/files`)
/// when they were built: when those change, so do these.
#[derive(Default)]
struct Preopens {
    built_with: Vec<Option<Arc<OpenDir>>>,
    wasi: WasiFilesystemCtx,
}

impl std::fmt::Debug for GrantedDirs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantedDirs").field("dirs", &self.dirs).finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct GrantedDir {
    path: PathBuf,
    read_only: bool,
    open: ArcSwapOption<OpenDir>,
    /// When the path was last compared with what is open, in ms since `epoch`.
    checked: AtomicU64,
    epoch: Instant,
}

/// A granted directory as opened, which directory that was, and (when
/// the grant is read-only) its open-file cache.
struct OpenDir {
    dir: File,
    identity: (u64, u64),
    cache: Option<FileCache<(Metadata, Option<Arc<Kept>>)>>,
}

impl std::fmt::Debug for OpenDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenDir").field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl GrantedDir {
    fn new(path: &Path, read_only: bool, module: &str) -> Self {
        let open = OpenDir::open(path, read_only).map_err(|error| {
            tracing::error!(module, "granted directory {} is unavailable: {error}", path.display());
        });
        GrantedDir {
            path: path.to_path_buf(),
            read_only,
            open: ArcSwapOption::new(open.ok().map(Arc::new)),
            checked: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// The directory open now; at most once a second, one `stat` of the
    /// path says whether it still names that directory, and if not, the
    /// one it names now is opened.
    fn current(&self) -> Option<Arc<OpenDir>> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let checked = self.checked.load(Ordering::Relaxed);
        let due = now.saturating_sub(checked) >= RECHECK_MS;
        if due && self.checked.compare_exchange(checked, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let named = std::fs::metadata(&self.path).ok().map(|found| (found.dev(), found.ino()));
            let open = self.open.load();
            if named != open.as_ref().map(|open| open.identity) {
                self.open.store(OpenDir::open(&self.path, self.read_only).ok().map(Arc::new));
            }
        }
        self.open.load_full()
    }
}

impl OpenDir {
    fn open(path: &Path, read_only: bool) -> std::io::Result<Self> {
        let dir = cap_primitives::fs::open_ambient_dir(path, cap_primitives::ambient_authority())?;
        let found = dir.metadata()?;
        // Written directories change all the time: no cache there.
        let cache = (read_only && file_cache::is_watchable(&dir)).then(FileCache::default);
        Ok(OpenDir { dir, identity: (found.dev(), found.ino()), cache })
    }
}

impl GrantedDirs {
    /// Opens every directory in `grants`; one that cannot be opened is
    /// logged, and tried again as requests come.
    pub fn open(grants: &Grants, module: &str) -> Self {
        let read = grants.read_dirs.iter().map(|path| GrantedDir::new(path, true, module));
        let mut dirs: Vec<GrantedDir> =
            read.chain(grants.write_dirs.iter().map(|path| GrantedDir::new(path, false, module))).collect();
        dirs.sort_by_key(|granted| std::cmp::Reverse(granted.path.as_os_str().len()));
        let read = grants.read_dirs.iter().map(|dir| (dir.clone(), FsPerms::ReadOnly));
        let preopen_order = read.chain(grants.write_dirs.iter().map(|dir| (dir.clone(), FsPerms::ReadWrite))).collect();
        let granted = GrantedDirs { dirs, preopen_order, preopens: Default::default(), module: module.to_string() };
        let built_with = granted.dirs.iter().map(GrantedDir::current).collect();
        granted.preopens.store(Arc::new(Preopens { built_with, wasi: granted.build_preopens() }));
        granted
    }

    /// WASI's preopens for a new instance: a copy of the mount's, which
    /// are opened again only when a granted path names another directory
    /// (checked at most once a second, as for `canto:http/files`).
    pub fn wasi_filesystem(&self) -> WasiFilesystemCtx {
        let preopens = self.preopens.load();
        let same = |granted: &GrantedDir, built: &Option<Arc<OpenDir>>| match (granted.current(), built) {
            (Some(open), Some(built)) => Arc::ptr_eq(&open, built),
            (open, built) => open.is_none() && built.is_none(),
        };
        if self.dirs.iter().zip(&preopens.built_with).all(|(granted, built)| same(granted, built)) {
            return preopens.wasi.clone();
        }
        let built_with = self.dirs.iter().map(GrantedDir::current).collect();
        let rebuilt = Arc::new(Preopens { built_with, wasi: self.build_preopens() });
        self.preopens.store(Arc::clone(&rebuilt));
        rebuilt.wasi.clone()
    }

    fn build_preopens(&self) -> WasiFilesystemCtx {
        let mut wasi = WasiCtxBuilder::new();
        for (dir, perms) in &self.preopen_order {
            // Reads of granted files (a stat, a 64 KiB read from the page
            // cache) cost less than a hand-off to tokio's blocking pool, so
            // they run on the request's thread; writes and fsyncs, which
            // can stall, still go to the pool. Captured per directory.
            wasi.allow_blocking_current_thread(*perms == FsPerms::ReadOnly);
            let guest_path = dir.to_string_lossy();
            if let Err(error) = wasi.preopened_dir(dir, &*guest_path, *perms) {
                tracing::error!(module = %self.module, "granted directory {} is unavailable: {error:#}", dir.display());
            }
        }
        std::mem::take(wasi.build().filesystem())
    }

    /// The granted directory `path` lies in, and the rest of the path
    /// relative to it (`.` for the directory itself).
    fn beneath<'a>(&self, path: &'a str) -> Option<(Option<Arc<OpenDir>>, &'a Path)> {
        self.dirs.iter().find_map(|granted| {
            let rest = Path::new(path).strip_prefix(&granted.path).ok()?;
            let rest = if rest.as_os_str().is_empty() { Path::new(".") } else { rest };
            Some((granted.current(), rest))
        })
    }
}

/// An open file (or directory) and what it was when opened.
pub struct OpenFile {
    file: Arc<File>,
    metadata: Metadata,
    kept: Option<Arc<Kept>>,
}

/// A small cached file's bytes, read once when it was opened and counted
/// against [`KEPT_BUDGET`] until the last response using them is sent.
/// The cache drops it with the file when anything changes.
pub struct Kept {
    bytes: Bytes,
    reserved: usize,
}

impl Kept {
    /// The file's bytes, if it is small and the budget has room.
    fn read(file: &File, metadata: &Metadata) -> Option<Arc<Kept>> {
        if metadata.kind != Kind::File || metadata.size > KEEP_IN_MEMORY {
            return None;
        }
        let size = usize::try_from(metadata.size).ok()?;
        KEPT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |kept| {
            kept.checked_add(size).filter(|total| *total <= KEPT_BUDGET)
        })
        .ok()?;
        // Constructed before the read so that a failed one gives the budget back.
        let mut kept = Kept { bytes: Bytes::new(), reserved: size };
        let mut buffer = vec![0u8; size];
        file.read_exact_at(&mut buffer, 0).ok()?;
        kept.bytes = buffer.into();
        Some(Arc::new(kept))
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        KEPT.fetch_sub(self.reserved, Ordering::Relaxed);
    }
}

fn open(dirs: &GrantedDirs, path: &str) -> Result<OpenFile, Error> {
    let (dir, rest) = dirs.beneath(path).ok_or(Error::Forbidden)?;
    let dir = dir.ok_or(Error::NotFound)?;
    if let Some(cache) = &dir.cache {
        let describe = |file: &File| {
            let metadata = describe(file)?;
            let regular = metadata.kind == Kind::File;
            Ok(((metadata, Kept::read(file, &metadata)), regular))
        };
        if let Some(found) = cache.open(&dir.dir, rest, describe) {
            let found = found.map_err(|error| open_error(&error))?;
            let (metadata, kept) = found.metadata;
            return Ok(OpenFile { file: found.file, metadata, kept });
        }
    }
    let mut options = cap_primitives::fs::OpenOptions::new();
    // Non-blocking: opening a FIFO must not wait for a writer.
    options.read(true)._cap_fs_ext_maybe_dir(true)._cap_fs_ext_nonblock(true);
    let file = cap_primitives::fs::open(&dir.dir, rest, &options).map_err(|error| open_error(&error))?;
    let metadata = describe(&file).map_err(|_| Error::Failed)?;
    Ok(OpenFile { file: Arc::new(file), metadata, kept: None })
}

fn open_error(error: &std::io::Error) -> Error {
    match error.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory | std::io::ErrorKind::InvalidFilename => {
            Error::NotFound
        }
        std::io::ErrorKind::PermissionDenied => Error::Forbidden,
        _ => Error::Failed,
    }
}

/// What a file is, from one `fstat`.
fn describe(file: &File) -> std::io::Result<Metadata> {
    let found = file.metadata()?;
    let kind = if found.is_file() {
        Kind::File
    } else if found.is_dir() {
        Kind::Directory
    } else {
        Kind::Other
    };
    Ok(Metadata {
        kind,
        size: found.len(),
        modified_seconds: found.mtime(),
        modified_nanoseconds: u32::try_from(found.mtime_nsec()).unwrap_or(0),
        device: found.dev(),
        inode: found.ino(),
    })
}

impl Host for InstanceState {
    fn open(&mut self, path: String) -> Result<Resource<OpenFile>, Error> {
        let opened = open(&self.mount.granted_dirs, &path)?;
        self.http().table.push(opened).map_err(|_| Error::Failed)
    }

    fn respond(
        &mut self,
        out: Resource<HostResponseOutparam>,
        status: u16,
        headers: Resource<FieldMap>,
        file: Resource<OpenFile>,
        parts: Vec<Part>,
        trailer: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let file = self.http().table.delete(file)?;
        let headers = self.http().table.delete(headers)?;
        let out = self.http().table.delete(out)?;
        if file.metadata.kind != Kind::File {
            wasmtime::bail!("files.respond: not a regular file");
        }
        let size = file.metadata.size;
        if parts.iter().any(|part| part.start.checked_add(part.length).is_none_or(|end| end > size)) {
            wasmtime::bail!("files.respond: a part reaches past the end of the file ({size} bytes)");
        }
        let total = parts.iter().try_fold(trailer.len() as u64, |total, part| {
            total.checked_add(part.header.len() as u64)?.checked_add(part.length)
        });
        if total.is_none() {
            wasmtime::bail!("files.respond: the body's length overflows");
        }
        // A file body only goes with a status that has one.
        if !(200..=599).contains(&status) || status == 204 || status == 304 {
            wasmtime::bail!("files.respond: status {status} has no body");
        }
        let status = http::StatusCode::from_u16(status)?;
        let body = FileBody::new(file.file, file.kept, parts, trailer, self.facts.as_ref());
        let mut response = hyper::Response::new(http_body_util::BodyExt::boxed_unsync(body));
        *response.status_mut() = status;
        *response.headers_mut() = (*headers).clone();
        let headers = response.headers_mut();
        headers.remove(http::header::TRANSFER_ENCODING);
        let length = Body::size_hint(response.body()).exact().unwrap_or(0);
        response.headers_mut().insert(http::header::CONTENT_LENGTH, length.into());
        (out.send)(Ok(response));
        Ok(())
    }
}

impl HostFile for InstanceState {
    fn metadata(&mut self, file: Resource<OpenFile>) -> Metadata {
        self.http().table.get(&file).map(|file| file.metadata).unwrap_or(Metadata {
            kind: Kind::Other,
            size: 0,
            modified_seconds: 0,
            modified_nanoseconds: 0,
            device: 0,
            inode: 0,
        })
    }

    fn drop(&mut self, file: Resource<OpenFile>) -> wasmtime::Result<()> {
        self.http().table.delete(file)?;
        Ok(())
    }
}

/// What is left to send: header bytes, then a range of the file.
enum Piece {
    Bytes(Bytes),
    Range { start: u64, length: u64 },
}

/// A response body from an open file, a piece at a time: read into memory,
/// or, on a connection that can, sent by the kernel from the page cache
/// ([`SendfileQueue`]).
struct FileBody {
    file: Arc<File>,
    /// The file's bytes, when it is small enough to be kept in memory.
    kept: Option<Arc<Kept>>,
    pieces: VecDeque<Piece>,
    left: u64,
    sendfile: Option<Arc<SendfileQueue>>,
    /// Where the bytes sent are counted, by how.
    metrics: Option<Arc<Metrics>>,
    /// A large piece (start, length) being read, or brought into the page
    /// cache to be sent from there, on the blocking pool.
    reading: Option<(tokio::task::JoinHandle<std::io::Result<Read>>, u64, u64)>,
}

/// A large piece, done on the blocking pool.
enum Read {
    Bytes(Bytes),
    /// In the page cache, to be sent from there.
    Cached,
}

impl FileBody {
    fn new(
        file: Arc<File>,
        kept: Option<Arc<Kept>>,
        parts: Vec<Part>,
        trailer: Vec<u8>,
        facts: Option<&RequestFacts>,
    ) -> Self {
        let mut pieces = VecDeque::new();
        for Part { header, start, length } in parts {
            pieces.push_back(Piece::Bytes(header.into()));
            pieces.push_back(Piece::Range { start, length });
        }
        pieces.push_back(Piece::Bytes(trailer.into()));
        pieces.retain(|piece| match piece {
            Piece::Bytes(bytes) => !bytes.is_empty(),
            Piece::Range { length, .. } => *length > 0,
        });
        let left = pieces
            .iter()
            .map(|piece| match piece {
                Piece::Bytes(bytes) => bytes.len() as u64,
                Piece::Range { length, .. } => *length,
            })
            .sum();
        let sendfile = facts.and_then(|facts| facts.sendfile.clone());
        let metrics = facts.map(|facts| Arc::clone(&facts.metrics));
        FileBody { file, kept, pieces, left, sendfile, metrics, reading: None }
    }

    /// Takes the next piece to send from the front range, advancing it.
    fn next_piece(&mut self) -> Option<(u64, u64)> {
        let Some(Piece::Range { start, length }) = self.pieces.front_mut() else { return None };
        let piece = (*start, (*length).min(PIECE));
        *start += piece.1;
        *length -= piece.1;
        if *length == 0 {
            self.pieces.pop_front();
        }
        Some(piece)
    }

    /// The chunk that sends `length` bytes at `start`: the kept bytes, a
    /// placeholder the connection sends with `sendfile`, or the bytes read.
    fn chunk(&self, start: u64, length: u64) -> std::io::Result<Bytes> {
        if let Some(kept) = self.kept_range(start, length) {
            return Ok(kept);
        }
        match &self.sendfile {
            Some(queue) => Ok(queue.placeholder(Arc::clone(&self.file), start, length as usize)),
            None => read_at(&self.file, start, length),
        }
    }

    fn kept_range(&self, start: u64, length: u64) -> Option<Bytes> {
        let kept = &self.kept.as_ref()?.bytes;
        let start = usize::try_from(start).ok()?;
        let end = start.checked_add(usize::try_from(length).ok()?)?;
        (end <= kept.len()).then(|| kept.slice(start..end))
    }
}

/// Reads exactly `length` bytes at `start`; a file that shrank is an error.
fn read_at(file: &File, start: u64, length: u64) -> std::io::Result<Bytes> {
    let mut buffer = vec![0u8; usize::try_from(length).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut buffer, start)?;
    Ok(buffer.into())
}

/// Whether a range looks to be in the page cache, so that sending it will
/// not wait for the disk: its first and last bytes are (`RWF_NOWAIT` reads
/// fail otherwise). Files are read ahead in order, so a range with both
/// ends cached nearly always is whole; if not, the send waits for at most
/// one piece's reads, as a read of it inline would.
fn is_cached(file: &File, start: u64, length: u64) -> bool {
    let cached = |at: u64| {
        let mut byte = [0u8; 1];
        let mut buffer = [std::io::IoSliceMut::new(&mut byte)];
        matches!(rustix::io::preadv2(file, &mut buffer, at, rustix::io::ReadWriteFlags::NOWAIT), Ok(1))
    };
    length > 0 && cached(start) && cached(start + length - 1)
}

/// Brings `length` bytes at `start` into the page cache, so that sending
/// them does not wait for the disk: `sendfile` to /dev/null reads them in
/// and drops them without copying.
fn bring_into_cache(file: &File, mut start: u64, length: u64) -> std::io::Result<()> {
    static DEV_NULL: std::sync::OnceLock<File> = std::sync::OnceLock::new();
    let null = match DEV_NULL.get() {
        Some(null) => null,
        // Kept once opened; tried again next time if it failed (out of descriptors).
        None => match File::options().write(true).open("/dev/null") {
            Ok(null) => DEV_NULL.get_or_init(|| null),
            Err(_) => return read_at(file, start, length).map(drop),
        },
    };
    let end = start.saturating_add(length);
    while start < end {
        let want = usize::try_from(end - start).unwrap_or(usize::MAX);
        if rustix::fs::sendfile(null, file, Some(&mut start), want)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file shrank"));
        }
    }
    Ok(())
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let chunk = if let Some((reading, start, length)) = this.reading.as_mut() {
            let done = ready!(Pin::new(reading).poll(cx));
            let (start, length) = (*start, *length);
            this.reading = None;
            match done.unwrap_or_else(|join| Err(std::io::Error::other(join))) {
                // Registered only now that it is the next chunk out.
                Ok(Read::Cached) => this.chunk(start, length),
                Ok(Read::Bytes(bytes)) => Ok(bytes),
                Err(error) => Err(error),
            }
        } else {
            match this.pieces.front() {
                None => return Poll::Ready(None),
                Some(Piece::Bytes(_)) => {
                    let Some(Piece::Bytes(bytes)) = this.pieces.pop_front() else { unreachable!() };
                    this.left -= bytes.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Some(Piece::Range { .. }) => {}
            }
            let Some((start, length)) = this.next_piece() else { return Poll::Ready(None) };
            let in_cache = || this.sendfile.is_some() && is_cached(&this.file, start, length);
            if length <= READ_INLINE || in_cache() {
                this.chunk(start, length)
            } else {
                let file = Arc::clone(&this.file);
                let sendfile = this.sendfile.is_some();
                let reading = tokio::task::spawn_blocking(move || match sendfile {
                    true => bring_into_cache(&file, start, length).map(|()| Read::Cached),
                    false => read_at(&file, start, length).map(Read::Bytes),
                });
                this.reading = Some((reading, start, length));
                return self.poll_frame(cx);
            }
        };
        match chunk {
            Ok(bytes) => {
                this.left -= bytes.len() as u64;
                if let Some(metrics) = &this.metrics {
                    metrics.file_body_sent(this.sendfile.is_some() && this.kept.is_none(), bytes.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Err(error) => {
                tracing::debug!("file body cut short: {error}");
                this.pieces.clear();
                this.left = 0;
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(format!(
                    "reading the file: {error}"
                ))))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty() && self.reading.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}
