//! The immutable share container, versions 1 and 2 (`gbs-protocol.md` §6.2).
//!
//! ```text
//! offset      size            field (big-endian)
//! 0           4               version: 1 or 2 (new files: 2)
//! 4           4               min(2^32-1, allocated size); legacy, never read
//! 8           4               lease count N
//! 12          allocated size  share data
//! 12+size     N x 72          lease records (see `lease.rs`)
//! ```
//!
//! The data length is not stored: it is the file size minus the header and the leases.
//! An upload's file gets its first lease at `12 + size` straight away, so the data region
//! is a hole that the upload fills in.

use std::fs::File;
use std::io;

use super::lease::{
    decide, LeaseChange, LeaseGrant, LeaseRecord, SecretForm, IMMUTABLE_LEASE_SIZE,
};
use super::{end_of, file_len, read_exact_at, u32_at, write_all_at, Records};

/// Size of the header; share data starts right after it.
pub(crate) const HEADER_SIZE: u64 = 12;
const LEASE_COUNT_AT: u64 = 8;
const EXPIRY_IN_RECORD: u64 = 68;
const LEASE_SIZE: u64 = IMMUTABLE_LEASE_SIZE as u64;

/// The two versions of the immutable container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImmutableVersion {
    /// Lease secrets in cleartext.
    V1,
    /// Lease secrets as BLAKE2b-256 digests. Written for every new share.
    V2,
}

impl ImmutableVersion {
    /// The number in the first four bytes.
    pub(crate) const fn number(self) -> u32 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    fn from_number(number: u32) -> Option<Self> {
        match number {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }

    /// How this version stores lease secrets.
    pub(crate) const fn secret_form(self) -> SecretForm {
        match self {
            Self::V1 => SecretForm::Cleartext,
            Self::V2 => SecretForm::Blake2b256,
        }
    }
}

/// The 12-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ImmutableHeader {
    /// Container version.
    pub(crate) version: ImmutableVersion,
    /// The legacy size field: the allocated size, saturated at `u32::MAX`.
    pub(crate) legacy_size: u32,
    /// Number of lease records at the end of the file.
    pub(crate) lease_count: u32,
}

impl ImmutableHeader {
    /// The header of a new container for `allocated_size` bytes of data.
    pub(crate) fn new(version: ImmutableVersion, allocated_size: u64, lease_count: u32) -> Self {
        // Stock Tahoe saturates this legacy field (allmydata/storage/immutable_schema.py).
        let legacy_size = u32::try_from(allocated_size).unwrap_or(u32::MAX);
        Self {
            version,
            legacy_size,
            lease_count,
        }
    }

    /// The encoding.
    pub(crate) fn to_bytes(self) -> [u8; HEADER_SIZE as usize] {
        let mut out = [0u8; HEADER_SIZE as usize];
        out[..4].copy_from_slice(&self.version.number().to_be_bytes());
        out[4..8].copy_from_slice(&self.legacy_size.to_be_bytes());
        out[8..].copy_from_slice(&self.lease_count.to_be_bytes());
        out
    }

    /// Decodes a header; `None` unless it is 12 bytes or more with version 1 or 2.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            version: ImmutableVersion::from_number(u32_at(bytes, 0)?)?,
            legacy_size: u32_at(bytes, 4)?,
            lease_count: u32_at(bytes, 8)?,
        })
    }

    /// Whether the first bytes of a file look like an immutable container.
    pub(crate) fn recognizes(head: &[u8]) -> bool {
        Self::from_bytes(head).is_some()
    }
}

/// An open immutable container: a completed share, or an upload in progress.
#[derive(Debug)]
pub(crate) struct ImmutableContainer {
    file: File,
    header: ImmutableHeader,
    data_len: u64,
}

impl ImmutableContainer {
    /// Writes a new version 2 container for `allocated_size` bytes into the empty `file`,
    /// with `first_lease` already in place after the (still sparse) data region.
    pub(crate) fn create(
        file: File,
        allocated_size: u64,
        first_lease: &LeaseGrant,
    ) -> io::Result<Self> {
        Self::create_version(file, ImmutableVersion::V2, allocated_size, first_lease)
    }

    pub(crate) fn create_version(
        file: File,
        version: ImmutableVersion,
        allocated_size: u64,
        first_lease: &LeaseGrant,
    ) -> io::Result<Self> {
        let lease_at = end_of(HEADER_SIZE, allocated_size)?;
        end_of(lease_at, LEASE_SIZE)?;
        let header = ImmutableHeader::new(version, allocated_size, 1);
        let record = first_lease.record(version.secret_form());
        file.set_len(0)?;
        write_all_at(&file, lease_at, &record.to_immutable_bytes())?;
        write_all_at(&file, 0, &header.to_bytes())?;
        Ok(Self {
            file,
            header,
            data_len: allocated_size,
        })
    }

    /// Reads the header of an existing file. `None` when the file is not an immutable
    /// container, or is too short for the leases its header claims.
    pub(crate) fn open(file: File) -> io::Result<Option<Self>> {
        let len = file_len(&file)?;
        if len < HEADER_SIZE {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_SIZE as usize];
        read_exact_at(&file, 0, &mut head)?;
        let Some(header) = ImmutableHeader::from_bytes(&head) else {
            return Ok(None);
        };
        let leases = u64::from(header.lease_count) * LEASE_SIZE;
        let data_len = len
            .checked_sub(HEADER_SIZE)
            .and_then(|rest| rest.checked_sub(leases));
        Ok(data_len.map(|data_len| Self {
            file,
            header,
            data_len,
        }))
    }

    /// The header as last read or written.
    #[cfg(test)]
    pub(crate) fn header(&self) -> ImmutableHeader {
        self.header
    }

    /// Where share data byte 0 is in the file.
    pub(crate) const fn data_offset(&self) -> u64 {
        HEADER_SIZE
    }

    /// Bytes of share data (the allocated size, for an upload).
    pub(crate) fn data_len(&self) -> u64 {
        self.data_len
    }

    /// File offset of `offset..offset+len` of the data, which must lie inside the data.
    fn data_at(&self, offset: u64, len: usize) -> io::Result<u64> {
        if end_of(offset, len as u64)? > self.data_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range is outside the share data",
            ));
        }
        end_of(HEADER_SIZE, offset)
    }

    /// Reads share data at `offset` into `buf`.
    pub(crate) fn read_data(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_exact_at(&self.file, self.data_at(offset, buf.len())?, buf)
    }

    /// Writes share data at `offset`; refuses bytes past the data region.
    pub(crate) fn write_data(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_all_at(&self.file, self.data_at(offset, data.len())?, data)
    }

    /// Starts the disk write of share data just written at `offset` (see
    /// [`writeback`](crate::storage::writeback)).
    pub(crate) fn start_writeback(&self, offset: u64, len: usize) {
        if let Ok(at) = self.data_at(offset, len) {
            crate::storage::writeback::start(&self.file, at, at.saturating_add(len as u64));
        }
    }

    fn lease_at(&self, index: u64) -> io::Result<u64> {
        end_of(
            HEADER_SIZE + self.data_len,
            index.saturating_mul(LEASE_SIZE),
        )
    }

    /// The leases, in file order, read through a small buffer.
    pub(crate) fn leases(
        &self,
    ) -> io::Result<impl Iterator<Item = io::Result<(u64, LeaseRecord)>> + '_> {
        let records = Records::<IMMUTABLE_LEASE_SIZE>::new(
            &self.file,
            self.lease_at(0)?,
            u64::from(self.header.lease_count),
            0,
        );
        Ok(records.map(|r| r.map(|(i, bytes)| (i, LeaseRecord::from_immutable_bytes(&bytes)))))
    }

    /// Renews the lease with the grant's renew secret (only to a later expiry) or appends
    /// a new lease.
    pub(crate) fn add_or_renew_lease(&mut self, grant: &LeaseGrant) -> io::Result<LeaseChange> {
        let form = self.header.version.secret_form();
        let change = decide(grant, form, self.leases()?)?;
        match change {
            LeaseChange::Renew(index) => {
                let at = end_of(self.lease_at(index)?, EXPIRY_IN_RECORD)?;
                write_all_at(&self.file, at, &grant.expiry.to_be_bytes())?;
            }
            LeaseChange::Keep => {}
            LeaseChange::Add => {
                let count = self.header.lease_count.checked_add(1).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "share has the most leases it can count",
                    )
                })?;
                // The record goes first, as in stock Tahoe: a crash before the count is
                // updated leaves 72 bytes that read as trailing share data (clients read
                // only the offsets the share's own layout names), whereas the other order
                // would leave a file too short for its lease count, which no longer parses.
                // A record written only in part (the disk filled up) would likewise read
                // as share data, but unlike a crash this is noticed: it is cut off again.
                let record = grant.record(form).to_immutable_bytes();
                let end = self.lease_at(u64::from(self.header.lease_count))?;
                if let Err(e) = write_all_at(&self.file, end, &record) {
                    if let Err(undo) = self.file.set_len(end) {
                        tracing::error!(error = %undo, "cannot cut off a partial lease record");
                    }
                    return Err(e);
                }
                write_all_at(&self.file, LEASE_COUNT_AT, &count.to_be_bytes())?;
                self.header.lease_count = count;
            }
        }
        Ok(change)
    }

    /// The file, for streaming reads.
    pub(crate) fn into_file(self) -> File {
        self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets};
    use crate::storage::container::lease::blake2b_256;

    fn grant(renew: u8, now: u64) -> LeaseGrant {
        let secrets = LeaseSecrets {
            renew: LeaseRenewSecret::new([renew; 32]),
            cancel: LeaseCancelSecret::new([renew ^ 0xff; 32]),
        };
        LeaseGrant::new(0, secrets, now, [0; 20])
    }

    fn reopen(container: ImmutableContainer) -> ImmutableContainer {
        ImmutableContainer::open(container.into_file())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn header_round_trips_and_saturates_the_legacy_size() {
        let header = ImmutableHeader::new(ImmutableVersion::V2, 26, 1);
        assert_eq!(header.to_bytes(), [0, 0, 0, 2, 0, 0, 0, 26, 0, 0, 0, 1]);
        assert_eq!(
            ImmutableHeader::from_bytes(&header.to_bytes()),
            Some(header)
        );
        let huge = ImmutableHeader::new(ImmutableVersion::V1, 1 << 40, 0);
        assert_eq!(huge.legacy_size, u32::MAX);
        assert_eq!(&huge.to_bytes()[..4], &[0, 0, 0, 1]);
        assert_eq!(
            ImmutableHeader::from_bytes(&[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(ImmutableHeader::from_bytes(&[0, 0, 0, 2]), None);
    }

    #[test]
    fn completed_26_byte_share_with_one_lease_is_110_bytes() {
        let file = tempfile::tempfile().unwrap();
        let container = ImmutableContainer::create(file, 26, &grant(b'R', 1_000)).unwrap();
        container
            .write_data(0, b"abcdefghijklmnopqrstuvwxyz")
            .unwrap();
        let container = reopen(container);
        assert_eq!(file_len(&container.file).unwrap(), 110);
        assert_eq!(container.data_len(), 26);
        assert_eq!(
            container.header(),
            ImmutableHeader::new(ImmutableVersion::V2, 26, 1)
        );
        let mut data = [0u8; 26];
        container.read_data(0, &mut data).unwrap();
        assert_eq!(&data, b"abcdefghijklmnopqrstuvwxyz");
        let leases: Vec<_> = container.leases().unwrap().map(Result::unwrap).collect();
        assert_eq!(leases.len(), 1);
        let (index, lease) = &leases[0];
        assert_eq!(*index, 0);
        assert_eq!(lease.owner, 0);
        assert_eq!(lease.renew, blake2b_256(&[b'R'; 32]));
        assert_eq!(lease.expiry, 1_000 + 2_678_400);
        let mut raw = [0u8; 72];
        read_exact_at(&container.file, 38, &mut raw).unwrap();
        assert_eq!(&raw[4..36], &blake2b_256(&[b'R'; 32]));
    }

    #[test]
    fn upload_file_is_sparse_until_written() {
        let file = tempfile::tempfile().unwrap();
        let container = ImmutableContainer::create(file, 1 << 30, &grant(1, 0)).unwrap();
        assert_eq!(file_len(&container.file).unwrap(), 12 + (1 << 30) + 72);
        assert_eq!(container.data_len(), 1 << 30);
        let mut hole = [9u8; 4];
        container.read_data(1 << 20, &mut hole).unwrap();
        assert_eq!(hole, [0; 4]);
    }

    #[test]
    fn data_access_stays_inside_the_data() {
        let file = tempfile::tempfile().unwrap();
        let container = ImmutableContainer::create(file, 10, &grant(1, 0)).unwrap();
        assert!(container.write_data(8, b"abc").is_err());
        assert!(container.write_data(u64::MAX, b"a").is_err());
        let mut buf = [0u8; 2];
        assert!(container.read_data(9, &mut buf).is_err());
        container.write_data(8, b"ab").unwrap();
        let leases: Vec<_> = container.leases().unwrap().map(Result::unwrap).collect();
        assert_eq!(
            leases[0].1.expiry, 2_678_400,
            "lease untouched by data writes"
        );
    }

    #[test]
    fn absurd_sizes_fail_without_panicking() {
        let file = tempfile::tempfile().unwrap();
        assert!(ImmutableContainer::create(file, u64::MAX, &grant(1, 0)).is_err());
        let file = tempfile::tempfile().unwrap();
        assert!(ImmutableContainer::create(file, 1 << 63, &grant(1, 0)).is_err());
    }

    #[test]
    fn leases_renew_to_later_expiry_or_append() {
        let file = tempfile::tempfile().unwrap();
        let mut container = ImmutableContainer::create(file, 4, &grant(1, 100)).unwrap();
        container.write_data(0, b"data").unwrap();
        assert_eq!(
            container.add_or_renew_lease(&grant(1, 50)).unwrap(),
            LeaseChange::Keep
        );
        assert_eq!(
            container.add_or_renew_lease(&grant(1, 200)).unwrap(),
            LeaseChange::Renew(0)
        );
        assert_eq!(
            container.add_or_renew_lease(&grant(2, 300)).unwrap(),
            LeaseChange::Add
        );
        let container = reopen(container);
        assert_eq!(container.header().lease_count, 2);
        assert_eq!(file_len(&container.file).unwrap(), 12 + 4 + 2 * 72);
        assert_eq!(
            container.data_len(),
            4,
            "appending a lease does not change the data"
        );
        let expiries: Vec<_> = container
            .leases()
            .unwrap()
            .map(|l| l.unwrap().1.expiry)
            .collect();
        assert_eq!(expiries, [200 + 2_678_400, 300 + 2_678_400]);
    }

    #[test]
    fn version_1_leases_are_cleartext_and_renewable() {
        let file = tempfile::tempfile().unwrap();
        let mut container =
            ImmutableContainer::create_version(file, ImmutableVersion::V1, 3, &grant(7, 0))
                .unwrap();
        container.write_data(0, b"xyz").unwrap();
        let mut raw = [0u8; 4];
        read_exact_at(&container.file, 0, &mut raw).unwrap();
        assert_eq!(raw, [0, 0, 0, 1]);
        let mut secret = [0u8; 32];
        read_exact_at(&container.file, 12 + 3 + 4, &mut secret).unwrap();
        assert_eq!(secret, [7; 32]);
        assert_eq!(
            container.add_or_renew_lease(&grant(7, 10)).unwrap(),
            LeaseChange::Renew(0)
        );
        let container = reopen(container);
        assert_eq!(container.header().version, ImmutableVersion::V1);
        let lease = container.leases().unwrap().next().unwrap().unwrap().1;
        assert_eq!(lease.expiry, 10 + 2_678_400);
        assert_eq!(lease.renew, [7; 32]);
    }

    #[test]
    fn open_refuses_files_that_do_not_add_up() {
        for bytes in [
            &b""[..],
            &[0, 0, 0, 2, 0, 0, 0, 0][..],
            &[0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0][..],
            // Claims one lease but has no room for it.
            &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3][..],
        ] {
            let file = tempfile::tempfile().unwrap();
            write_all_at(&file, 0, bytes).unwrap();
            assert!(
                ImmutableContainer::open(file).unwrap().is_none(),
                "{bytes:?}"
            );
        }
    }
}
