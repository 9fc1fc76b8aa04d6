//! [`PagerError`]: what can go wrong when starting a pager or serving its faults.

use crate::install::InstallError;
use crate::shared::SharedError;
use crate::source::SourceError;
use std::io;
use std::sync::Arc;
use userfaultfd::Error as UffdError;

/// What went wrong, at setup or while serving faults. Cloneable: the handle hands out copies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PagerError {
    /// The region or source does not fit the backing (alignment, sizes).
    #[error("invalid region: {0}")]
    CheckRegion(String),
    /// userfaultfd(2) or UFFDIO_API failed.
    #[error("cannot create the userfaultfd")]
    CreateUffd(#[source] Arc<UffdError>),
    /// UFFDIO_REGISTER failed.
    #[error("cannot register {len:#x} bytes at {addr:#x} with the userfaultfd")]
    RegisterUffd {
        /// Region start.
        addr: usize,
        /// Region length.
        len: usize,
        /// The ioctl error.
        #[source]
        source: Arc<UffdError>,
    },
    /// eventfd(2) for the stop signal failed.
    #[error("cannot create the stop eventfd")]
    CreateEventfd(#[source] Arc<io::Error>),
    /// A thread could not be spawned.
    #[error("cannot spawn a pager thread")]
    SpawnThread(#[source] Arc<io::Error>),
    /// poll(2) on the userfaultfd failed.
    #[error("cannot poll the userfaultfd")]
    PollUffd(#[source] Arc<io::Error>),
    /// Reading an event from the userfaultfd failed.
    #[error("cannot read a userfaultfd event")]
    ReadEvent(#[source] Arc<UffdError>),
    /// The source could not produce a chunk of the block.
    #[error("cannot serve block {block}")]
    ReadChunk {
        /// Install block index.
        block: usize,
        /// The source's error (names the chunk).
        #[source]
        source: Arc<SourceError>,
    },
    /// An install ioctl failed.
    #[error("cannot install block {block}")]
    InstallChunk {
        /// Install block index.
        block: usize,
        /// The ioctl failure.
        #[source]
        source: Arc<InstallError>,
    },
    /// Filling the shared image failed.
    #[error("cannot fill block {block} of the shared image")]
    FillShared {
        /// Install block index.
        block: usize,
        /// The fill failure.
        #[source]
        source: Arc<SharedError>,
    },
    /// mprotect(2) of a failed block failed.
    #[error("cannot fence failed block {block}")]
    FenceBlock {
        /// Install block index.
        block: usize,
        /// The syscall error.
        #[source]
        source: Arc<io::Error>,
    },
}

impl PagerError {
    /// True when a fault could not be served because a chunk is corrupt.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, PagerError::ReadChunk { source, .. } if source.is_corrupt())
    }

    /// The chunk index a source error is about, if this is one.
    pub fn chunk(&self) -> Option<usize> {
        match self {
            PagerError::ReadChunk { source, .. } => Some(source.chunk()),
            _ => None,
        }
    }
}
