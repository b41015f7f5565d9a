//! The mutable share container, versions 1 and 2 (`gbs-protocol.md` §6.3).
//!
//! ```text
//! offset       size       field (big-endian)
//! 0            32         magic: "Tahoe mutable container vN\n" + 5 bytes
//! 32           20         nodeid of the server that created the share
//! 52           32         write enabler (cleartext in both versions)
//! 84           8          data length
//! 92           8          extra-lease offset E (468 when new)
//! 100          4 x 92     lease slots (owner 0 = empty; see `lease.rs`)
//! 468          ...        share data
//! E            4 + M x 92 u32 M, then M more lease records
//! ```
//!
//! The container never shrinks: truncation lowers the data length only, and the bytes
//! past it stay on disk until a later write covers them or zero-fills the gap before it.
//! When data would reach past `E`, the extra-lease block moves to `468 + new data end`.

use std::fs::File;
use std::io;
use std::ops::Range;

use subtle::ConstantTimeEq;

use super::lease::{decide, LeaseChange, LeaseGrant, LeaseRecord, SecretForm, MUTABLE_LEASE_SIZE};
use super::{
    array_at, copy_forward_within, end_of, file_len, read_exact_at, u64_at, write_all_at,
    write_zeros_at, Records,
};

/// Length of the magic string.
pub(crate) const MAGIC_LEN: usize = 32;
/// Size of the fixed header, leases excluded.
pub(crate) const HEADER_SIZE: u64 = 100;
/// Where share data starts: after the header and the four lease slots.
pub(crate) const DATA_OFFSET: u64 = HEADER_SIZE + LEASE_SLOTS * LEASE_SIZE;
/// Size of a new container with no data: header, four empty slots, extra-lease count 0.
pub(crate) const EMPTY_CONTAINER_SIZE: u64 = DATA_OFFSET + EXTRA_COUNT_SIZE;

const MAGIC_V1: [u8; MAGIC_LEN] = *b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e";
const MAGIC_V2: [u8; MAGIC_LEN] = *b"Tahoe mutable container v2\n\xc3\x55\x21\x99\x25";
const DATA_LENGTH_AT: u64 = 84;
const EXTRA_LEASE_OFFSET_AT: u64 = 92;
const LEASE_SLOTS: u64 = 4;
const LEASE_SIZE: u64 = MUTABLE_LEASE_SIZE as u64;
const EXTRA_COUNT_SIZE: u64 = 4;
const EXPIRY_IN_RECORD: u64 = 4;

/// The two versions of the mutable container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MutableVersion {
    /// Lease secrets in cleartext.
    V1,
    /// Lease secrets as BLAKE2b-256 digests. Written for every new share.
    V2,
}

impl MutableVersion {
    /// The 32-byte magic string that starts the file.
    pub(crate) const fn magic(self) -> [u8; MAGIC_LEN] {
        match self {
            Self::V1 => MAGIC_V1,
            Self::V2 => MAGIC_V2,
        }
    }

    /// The version whose magic `head` starts with.
    pub(crate) fn from_magic(head: &[u8]) -> Option<Self> {
        let magic = head.get(..MAGIC_LEN)?;
        [Self::V1, Self::V2]
            .into_iter()
            .find(|v| v.magic() == magic)
    }

    /// How this version stores lease secrets.
    pub(crate) const fn secret_form(self) -> SecretForm {
        match self {
            Self::V1 => SecretForm::Cleartext,
            Self::V2 => SecretForm::Blake2b256,
        }
    }
}

/// The 100-byte header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct MutableHeader {
    /// Container version, from the magic.
    pub(crate) version: MutableVersion,
    /// The server that created the share.
    pub(crate) nodeid: [u8; 20],
    /// The slot's write enabler.
    pub(crate) write_enabler: [u8; 32],
    /// Bytes of share data.
    pub(crate) data_length: u64,
    /// Where the extra-lease block starts.
    pub(crate) extra_lease_offset: u64,
}

impl std::fmt::Debug for MutableHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutableHeader")
            .field("version", &self.version)
            .field("data_length", &self.data_length)
            .field("extra_lease_offset", &self.extra_lease_offset)
            .finish_non_exhaustive()
    }
}

impl MutableHeader {
    /// The header of a new, empty container. The write enabler is zero-padded or truncated
    /// to 32 bytes, as stock Tahoe's `struct.pack("32s")` does.
    pub(crate) fn new(version: MutableVersion, nodeid: [u8; 20], write_enabler: &[u8]) -> Self {
        let mut stored = [0u8; 32];
        for (dest, byte) in stored.iter_mut().zip(write_enabler) {
            *dest = *byte;
        }
        Self {
            version,
            nodeid,
            write_enabler: stored,
            data_length: 0,
            extra_lease_offset: DATA_OFFSET,
        }
    }

    /// The encoding.
    pub(crate) fn to_bytes(self) -> [u8; HEADER_SIZE as usize] {
        let mut out = [0u8; HEADER_SIZE as usize];
        out[..32].copy_from_slice(&self.version.magic());
        out[32..52].copy_from_slice(&self.nodeid);
        out[52..84].copy_from_slice(&self.write_enabler);
        out[84..92].copy_from_slice(&self.data_length.to_be_bytes());
        out[92..].copy_from_slice(&self.extra_lease_offset.to_be_bytes());
        out
    }

    /// Decodes a header; `None` without a known magic.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            version: MutableVersion::from_magic(bytes)?,
            nodeid: array_at(bytes, 32)?,
            write_enabler: array_at(bytes, 52)?,
            data_length: u64_at(bytes, 84)?,
            extra_lease_offset: u64_at(bytes, 92)?,
        })
    }
}

/// An open mutable container.
#[derive(Debug)]
pub(crate) struct MutableContainer {
    file: File,
    header: MutableHeader,
    extra_lease_count: u32,
    file_len: u64,
}

impl MutableContainer {
    /// Writes a new, empty version 2 container into the empty `file`.
    pub(crate) fn create(file: File, nodeid: [u8; 20], write_enabler: &[u8]) -> io::Result<Self> {
        Self::create_version(file, MutableVersion::V2, nodeid, write_enabler)
    }

    pub(crate) fn create_version(
        file: File,
        version: MutableVersion,
        nodeid: [u8; 20],
        write_enabler: &[u8],
    ) -> io::Result<Self> {
        let header = MutableHeader::new(version, nodeid, write_enabler);
        let mut bytes = vec![0u8; EMPTY_CONTAINER_SIZE as usize];
        if let Some(dest) = bytes.get_mut(..HEADER_SIZE as usize) {
            dest.copy_from_slice(&header.to_bytes());
        }
        file.set_len(0)?;
        write_all_at(&file, 0, &bytes)?;
        Ok(Self {
            file,
            header,
            extra_lease_count: 0,
            file_len: EMPTY_CONTAINER_SIZE,
        })
    }

    /// Reads the header of an existing file. `None` when the file is not a mutable
    /// container or its offsets point outside it.
    pub(crate) fn open(file: File) -> io::Result<Option<Self>> {
        let file_len = file_len(&file)?;
        if file_len < EMPTY_CONTAINER_SIZE {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_SIZE as usize];
        read_exact_at(&file, 0, &mut head)?;
        let Some(header) = MutableHeader::from_bytes(&head) else {
            return Ok(None);
        };
        let elo = header.extra_lease_offset;
        let data_fits = DATA_OFFSET
            .checked_add(header.data_length)
            .is_some_and(|end| end <= elo);
        if !data_fits
            || elo
                .checked_add(EXTRA_COUNT_SIZE)
                .is_none_or(|end| end > file_len)
        {
            return Ok(None);
        }
        let mut count = [0u8; EXTRA_COUNT_SIZE as usize];
        read_exact_at(&file, elo, &mut count)?;
        let extra_lease_count = u32::from_be_bytes(count);
        let block_end = elo + EXTRA_COUNT_SIZE + u64::from(extra_lease_count) * LEASE_SIZE;
        if block_end > file_len {
            return Ok(None);
        }
        Ok(Some(Self {
            file,
            header,
            extra_lease_count,
            file_len,
        }))
    }

    /// The header as last read or written.
    #[cfg(test)]
    pub(crate) fn header(&self) -> MutableHeader {
        self.header
    }

    /// Where share data byte 0 is in the file.
    pub(crate) const fn data_offset(&self) -> u64 {
        DATA_OFFSET
    }

    /// Bytes of share data.
    pub(crate) fn data_len(&self) -> u64 {
        self.header.data_length
    }

    /// Size of the whole container file.
    pub(crate) fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Whether `presented` is the stored write enabler, in constant time. Only a 32-byte
    /// value can match, as in stock Tahoe.
    pub(crate) fn write_enabler_matches(&self, presented: &[u8]) -> bool {
        presented.ct_eq(&self.header.write_enabler).into()
    }

    /// `offset..offset+size` clamped to the data; empty when it starts at or past the end.
    pub(crate) fn clamp(&self, offset: u64, size: u64) -> Range<u64> {
        let end = offset.saturating_add(size).min(self.header.data_length);
        offset.min(end)..end
    }

    /// Reads `size` bytes at `offset`, clamped to the data.
    pub(crate) fn read_data(&self, offset: u64, size: u64) -> io::Result<Vec<u8>> {
        let range = self.clamp(offset, size);
        let len = usize::try_from(range.end - range.start).map_err(|_| {
            io::Error::new(io::ErrorKind::OutOfMemory, "read does not fit in memory")
        })?;
        let mut buf = vec![0u8; len];
        read_exact_at(&self.file, DATA_OFFSET + range.start, &mut buf)?;
        Ok(buf)
    }

    /// Writes `data` at `offset` as stock Tahoe does (allmydata/storage/mutable.py
    /// `_write_share_data`): a write ending at or past the data length sets the length to
    /// its end, zero-fills any gap before it, and first moves the extra-lease block if the
    /// data would reach it.
    pub(crate) fn write_data(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = end_of(offset, data.len() as u64)?;
        let at = end_of(DATA_OFFSET, offset)?;
        let data_end_in_file = end_of(DATA_OFFSET, end)?;
        let old_length = self.header.data_length;
        if end < old_length {
            return write_all_at(&self.file, at, data);
        }
        let file_len_before = self.file_len;
        if data_end_in_file > self.header.extra_lease_offset {
            self.move_extra_leases(data_end_in_file)?;
        }
        if offset > old_length {
            // Bytes past the old length may be stale (from before a truncation) or the old
            // extra-lease block; what lies past the old end of file is a hole, already zero.
            let gap_start = DATA_OFFSET + old_length;
            let gap_end = at.min(file_len_before);
            if gap_end > gap_start {
                write_zeros_at(&self.file, gap_start, gap_end - gap_start)?;
            }
        }
        write_all_at(&self.file, at, data)?;
        self.file_len = self.file_len.max(data_end_in_file);
        // The length goes last, so it never claims bytes that were not written.
        self.set_data_length(end)
    }

    /// Lowers the data length to `new_length` if that is smaller; a larger value is
    /// ignored (stock Tahoe never extends on truncation).
    pub(crate) fn truncate(&mut self, new_length: u64) -> io::Result<()> {
        if new_length < self.header.data_length {
            self.set_data_length(new_length)?;
        }
        Ok(())
    }

    fn set_data_length(&mut self, length: u64) -> io::Result<()> {
        write_all_at(&self.file, DATA_LENGTH_AT, &length.to_be_bytes())?;
        self.header.data_length = length;
        Ok(())
    }

    /// Moves the extra-lease block to `new_offset`. The new copy is written and synced
    /// before the header points at it, and only then is the old copy zeroed, so a crash
    /// leaves one complete block (unless the two copies overlap, which happens only when the
    /// data grows by less than the block's size).
    fn move_extra_leases(&mut self, new_offset: u64) -> io::Result<()> {
        let old_offset = self.header.extra_lease_offset;
        let block_len = EXTRA_COUNT_SIZE + u64::from(self.extra_lease_count) * LEASE_SIZE;
        let new_end = end_of(new_offset, block_len)?;
        copy_forward_within(&self.file, old_offset, new_offset, block_len)?;
        self.file_len = self.file_len.max(new_end);
        self.file.sync_data()?;
        write_all_at(&self.file, EXTRA_LEASE_OFFSET_AT, &new_offset.to_be_bytes())?;
        self.header.extra_lease_offset = new_offset;
        let stale_end = (old_offset + block_len).min(new_offset);
        write_zeros_at(&self.file, old_offset, stale_end - old_offset)
    }

    fn slot_at(&self, slot: u64) -> io::Result<u64> {
        if slot < LEASE_SLOTS {
            return Ok(HEADER_SIZE + slot * LEASE_SIZE);
        }
        let extra = (slot - LEASE_SLOTS).saturating_mul(LEASE_SIZE);
        end_of(self.header.extra_lease_offset + EXTRA_COUNT_SIZE, extra)
    }

    /// Every lease slot, empty ones (owner 0) included, numbered 0-3 for the fixed slots
    /// and 4.. for the extra-lease block.
    pub(crate) fn slots(
        &self,
    ) -> io::Result<impl Iterator<Item = io::Result<(u64, LeaseRecord)>> + '_> {
        let fixed = Records::<MUTABLE_LEASE_SIZE>::new(&self.file, HEADER_SIZE, LEASE_SLOTS, 0);
        let extra = Records::<MUTABLE_LEASE_SIZE>::new(
            &self.file,
            self.slot_at(LEASE_SLOTS)?,
            u64::from(self.extra_lease_count),
            LEASE_SLOTS,
        );
        Ok(fixed
            .chain(extra)
            .map(|r| r.map(|(slot, bytes)| (slot, LeaseRecord::from_mutable_bytes(&bytes)))))
    }

    /// The leases: the slots that are not empty.
    pub(crate) fn leases(
        &self,
    ) -> io::Result<impl Iterator<Item = io::Result<(u64, LeaseRecord)>> + '_> {
        Ok(self
            .slots()?
            .filter(|slot| !matches!(slot, Ok((_, record)) if record.owner == 0)))
    }

    /// Renews the lease with the grant's renew secret (only to a later expiry), or puts a
    /// new lease in the first empty slot, or appends one to the extra-lease block.
    pub(crate) fn add_or_renew_lease(&mut self, grant: &LeaseGrant) -> io::Result<LeaseChange> {
        let form = self.header.version.secret_form();
        let change = decide(grant, form, self.leases()?)?;
        match change {
            LeaseChange::Renew(slot) => {
                let at = end_of(self.slot_at(slot)?, EXPIRY_IN_RECORD)?;
                write_all_at(&self.file, at, &grant.expiry.to_be_bytes())?;
            }
            LeaseChange::Keep => {}
            LeaseChange::Add => self.add_lease(&grant.record(form))?,
        }
        Ok(change)
    }

    fn add_lease(&mut self, record: &LeaseRecord) -> io::Result<()> {
        let mut empty = None;
        for slot in self.slots()? {
            let (index, existing) = slot?;
            if existing.owner == 0 {
                empty = Some(index);
                break;
            }
        }
        if let Some(index) = empty {
            return write_all_at(&self.file, self.slot_at(index)?, &record.to_mutable_bytes());
        }
        let count = self.extra_lease_count.checked_add(1).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "share has the most leases it can count",
            )
        })?;
        let at = self.slot_at(LEASE_SLOTS + u64::from(self.extra_lease_count))?;
        write_all_at(&self.file, at, &record.to_mutable_bytes())?;
        write_all_at(
            &self.file,
            self.header.extra_lease_offset,
            &count.to_be_bytes(),
        )?;
        self.extra_lease_count = count;
        self.file_len = self.file_len.max(at + LEASE_SIZE);
        Ok(())
    }

    /// Flushes data and metadata to disk.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// The file, for streaming reads.
    pub(crate) fn into_file(self) -> File {
        self.file
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::protocol::{LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets};
    use crate::storage::container::lease::blake2b_256;

    const NODEID: [u8; 20] = [0x11; 20];

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn grant(renew: u8, now: u64) -> LeaseGrant {
        let secrets = LeaseSecrets {
            renew: LeaseRenewSecret::new([renew; 32]),
            cancel: LeaseCancelSecret::new([renew ^ 0xff; 32]),
        };
        LeaseGrant::new(1, secrets, now, NODEID)
    }

    fn new_container() -> MutableContainer {
        MutableContainer::create(tempfile::tempfile().unwrap(), NODEID, &[0xee; 32]).unwrap()
    }

    fn reopen(container: MutableContainer) -> MutableContainer {
        MutableContainer::open(container.into_file())
            .unwrap()
            .unwrap()
    }

    fn data(container: &MutableContainer) -> Vec<u8> {
        container.read_data(0, u64::MAX).unwrap()
    }

    fn raw(container: &MutableContainer, at: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        read_exact_at(&container.file, at, &mut buf).unwrap();
        buf
    }

    #[test]
    fn magics_match_the_protocol_bytes() {
        assert_eq!(
            MutableVersion::V1.magic().to_vec(),
            hex("5461686f65206d757461626c6520636f6e7461696e65722076310a750944038e")
        );
        assert_eq!(
            MutableVersion::V2.magic().to_vec(),
            hex("5461686f65206d757461626c6520636f6e7461696e65722076320ac355219925")
        );
        // The v2 suffix: SHA-256d(netstring(tag) || "Tahoe mutable container v2\n")[..5].
        let tag = b"allmydata_mutable_container_header";
        let mut input = format!("{}:", tag.len()).into_bytes();
        input.extend_from_slice(tag);
        input.push(b',');
        input.extend_from_slice(b"Tahoe mutable container v2\n");
        let digest = Sha256::digest(Sha256::digest(&input));
        assert_eq!(&MutableVersion::V2.magic()[27..], &digest[..5]);
    }

    #[test]
    fn header_round_trips_and_pads_the_write_enabler() {
        let header = MutableHeader::new(MutableVersion::V2, NODEID, b"short");
        let bytes = header.to_bytes();
        assert_eq!(&bytes[52..57], b"short");
        assert_eq!(&bytes[57..84], &[0; 27]);
        assert_eq!(&bytes[92..100], &468u64.to_be_bytes());
        assert_eq!(MutableHeader::from_bytes(&bytes), Some(header));
        let long = MutableHeader::new(MutableVersion::V1, NODEID, &[7; 40]);
        assert_eq!(long.write_enabler, [7; 32]);
        assert_eq!(MutableHeader::from_bytes(&[0; 100]), None);
    }

    #[test]
    fn empty_container_is_472_bytes() {
        let container = reopen(new_container());
        assert_eq!(file_len(&container.file).unwrap(), 472);
        assert_eq!(container.data_len(), 0);
        assert_eq!(container.header().extra_lease_offset, 468);
        assert_eq!(container.header().nodeid, NODEID);
        assert!(container.write_enabler_matches(&[0xee; 32]));
        assert!(!container.write_enabler_matches(&[0xee; 31]));
        assert!(!container.write_enabler_matches(&[0xef; 32]));
        assert_eq!(raw(&container, 0, 32), MutableVersion::V2.magic());
        assert_eq!(raw(&container, 100, 372), vec![0; 372]);
        assert_eq!(container.leases().unwrap().count(), 0);
    }

    #[test]
    fn writes_extend_and_zero_fill_gaps() {
        let mut container = new_container();
        container.write_data(0, b"hello").unwrap();
        container.write_data(8, b"world").unwrap();
        assert_eq!(data(&container), b"hello\0\0\0world");
        container.write_data(1, b"E").unwrap();
        assert_eq!(data(&container), b"hEllo\0\0\0world");
        let container = reopen(container);
        assert_eq!(container.data_len(), 13);
        assert_eq!(container.header().extra_lease_offset, 468 + 13);
        assert_eq!(file_len(&container.file).unwrap(), 468 + 13 + 4);
        assert_eq!(container.read_data(11, 100).unwrap(), b"ld");
        assert_eq!(container.read_data(13, 1).unwrap(), b"");
        assert_eq!(container.read_data(u64::MAX, u64::MAX).unwrap(), b"");
    }

    #[test]
    fn empty_write_past_the_end_extends_with_zeros() {
        let mut container = new_container();
        container.write_data(3, b"").unwrap();
        assert_eq!(data(&container), [0, 0, 0]);
    }

    #[test]
    fn truncate_only_lowers_and_never_exposes_stale_bytes() {
        let mut container = new_container();
        container.write_data(0, b"0123456789").unwrap();
        container.truncate(20).unwrap();
        assert_eq!(container.data_len(), 10, "a larger length is ignored");
        container.truncate(4).unwrap();
        assert_eq!(data(&container), b"0123");
        assert_eq!(
            file_len(&container.file).unwrap(),
            468 + 10 + 4,
            "the container never shrinks"
        );
        container.write_data(7, b"x").unwrap();
        assert_eq!(data(&container), b"0123\0\0\0x");
        container.truncate(2).unwrap();
        container.write_data(2, b"ab").unwrap();
        assert_eq!(data(&container), b"01ab");
    }

    #[test]
    fn growth_moves_the_extra_lease_block_and_zeroes_the_old_one() {
        let mut container = new_container();
        for renew in 0..6 {
            container.add_or_renew_lease(&grant(renew, 100)).unwrap();
        }
        assert_eq!(container.extra_lease_count, 2);
        let block = raw(&container, 468, 4 + 2 * 92);
        assert_eq!(&block[..4], &[0, 0, 0, 2]);
        container.write_data(0, &[0xab; 1000]).unwrap();
        let container = reopen(container);
        assert_eq!(container.header().extra_lease_offset, 468 + 1000);
        assert_eq!(raw(&container, 468 + 1000, 4 + 2 * 92), block);
        assert_eq!(
            data(&container),
            vec![0xab; 1000],
            "old block fully overwritten by data"
        );
        let renews: Vec<_> = container
            .leases()
            .unwrap()
            .map(|l| l.unwrap().1.renew)
            .collect();
        let expected: Vec<_> = (0..6).map(|r| blake2b_256(&[r; 32])).collect();
        assert_eq!(renews, expected);
    }

    #[test]
    fn a_far_write_moves_the_block_and_zeroes_its_old_place() {
        let mut container = new_container();
        for renew in 0..5 {
            container.add_or_renew_lease(&grant(renew, 100)).unwrap();
        }
        container.write_data(0, b"ab").unwrap();
        assert_eq!(container.header().extra_lease_offset, 470);
        container.write_data(1000, b"z").unwrap();
        assert_eq!(container.header().extra_lease_offset, 468 + 1001);
        let contents = data(&container);
        assert_eq!(contents.len(), 1001);
        assert_eq!(&contents[..2], b"ab");
        assert!(
            contents[2..1000].iter().all(|b| *b == 0),
            "old lease block not exposed"
        );
        assert_eq!(contents[1000], b'z');
        assert_eq!(reopen(container).leases().unwrap().count(), 5);
    }

    #[test]
    fn small_growth_moves_an_overlapping_block_intact() {
        let mut container = new_container();
        for renew in 0..7 {
            container.add_or_renew_lease(&grant(renew, 100)).unwrap();
        }
        container.write_data(0, b"a").unwrap();
        let container = reopen(container);
        assert_eq!(container.header().extra_lease_offset, 469);
        let renews: Vec<_> = container
            .leases()
            .unwrap()
            .map(|l| l.unwrap().1.renew)
            .collect();
        assert_eq!(renews.len(), 7);
        assert_eq!(renews[6], blake2b_256(&[6; 32]));
        assert_eq!(data(&container), b"a");
    }

    #[test]
    fn leases_fill_slots_then_the_extra_block_and_renew_in_place() {
        let mut container = new_container();
        assert_eq!(
            container.add_or_renew_lease(&grant(1, 100)).unwrap(),
            LeaseChange::Add
        );
        assert_eq!(
            container.add_or_renew_lease(&grant(1, 50)).unwrap(),
            LeaseChange::Keep
        );
        assert_eq!(
            container.add_or_renew_lease(&grant(1, 200)).unwrap(),
            LeaseChange::Renew(0)
        );
        for renew in 2..=5 {
            container.add_or_renew_lease(&grant(renew, 100)).unwrap();
        }
        assert_eq!(
            container.add_or_renew_lease(&grant(5, 300)).unwrap(),
            LeaseChange::Renew(4)
        );
        let container = reopen(container);
        assert_eq!(container.extra_lease_count, 1);
        assert_eq!(file_len(&container.file).unwrap(), 472 + 92);
        let leases: Vec<_> = container.leases().unwrap().map(Result::unwrap).collect();
        assert_eq!(leases.len(), 5);
        assert_eq!(leases[0].1.expiry, 200 + 2_678_400);
        assert_eq!(leases[4].1.expiry, 300 + 2_678_400);
        assert!(leases
            .iter()
            .all(|(_, l)| l.owner == 1 && l.nodeid == NODEID));
    }

    #[test]
    fn version_1_is_read_and_leased_with_cleartext_secrets() {
        let file = tempfile::tempfile().unwrap();
        let mut container =
            MutableContainer::create_version(file, MutableVersion::V1, NODEID, &[1; 32]).unwrap();
        container.write_data(0, b"v1 data").unwrap();
        container.add_or_renew_lease(&grant(9, 0)).unwrap();
        let mut container = reopen(container);
        assert_eq!(container.header().version, MutableVersion::V1);
        assert_eq!(
            raw(&container, 108, 32),
            vec![9; 32],
            "renew secret in cleartext"
        );
        assert_eq!(
            container.add_or_renew_lease(&grant(9, 10)).unwrap(),
            LeaseChange::Renew(0)
        );
        assert_eq!(data(&container), b"v1 data");
    }

    #[test]
    fn open_refuses_inconsistent_offsets() {
        let valid = new_container().header();
        let cases = [
            MutableHeader {
                data_length: 1,
                ..valid
            },
            MutableHeader {
                extra_lease_offset: 470,
                ..valid
            },
            MutableHeader {
                extra_lease_offset: u64::MAX,
                ..valid
            },
            MutableHeader {
                data_length: u64::MAX,
                extra_lease_offset: u64::MAX,
                ..valid
            },
        ];
        for header in cases {
            let container = new_container();
            write_all_at(&container.file, 0, &header.to_bytes()).unwrap();
            assert!(
                MutableContainer::open(container.into_file())
                    .unwrap()
                    .is_none(),
                "{header:?}"
            );
        }
        let container = new_container();
        write_all_at(&container.file, 468, &[0, 0, 0, 1]).unwrap();
        assert!(
            MutableContainer::open(container.into_file())
                .unwrap()
                .is_none(),
            "missing lease"
        );
        let short = tempfile::tempfile().unwrap();
        write_all_at(&short, 0, &MutableVersion::V2.magic()).unwrap();
        assert!(MutableContainer::open(short).unwrap().is_none());
    }

    #[test]
    fn overflowing_writes_are_errors() {
        let mut container = new_container();
        assert!(container.write_data(u64::MAX, b"x").is_err());
        assert!(container.write_data(u64::MAX - 100, b"").is_err());
        assert_eq!(container.data_len(), 0);
    }
}
