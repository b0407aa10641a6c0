//! A fault-injecting simulated disk, driven by a seed.
//!
//! It keeps two layers: `current` (what reads see) and `durable` (what survives a crash).
//! A write lands in `current` and marks its [`TEAR_SIZE`] units dirty; a barrier copies the
//! dirty units to `durable`. On [`SimDisk::crash`] every dirty unit independently persists or
//! is lost, which both loses un-barriered writes and tears the ones in flight.
//!
//! Faults, all from the seed: misdirected writes (within the zone of the intended offset),
//! bit flips in written data, transient and latent (sticky) read errors, and explicitly
//! injected write and barrier errors. Corruption is sticky: a re-read does not fix it.

use std::collections::{BTreeSet, VecDeque};
use std::ops::Range;

use super::{AlignedBuf, Completion, DiskError, IoKind, VirtualDisk, check_io};
use crate::constants::{SECTOR_SIZE, TEAR_SIZE};
use crate::rng::Rng;

/// Fault rates, in parts per million of the operations they apply to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFaults {
    /// A write lands at another offset of the same zone instead of its own.
    pub misdirect_ppm: u32,
    /// A write lands with one bit flipped.
    pub bit_flip_ppm: u32,
    /// A read fails (transiently).
    pub read_error_ppm: u32,
}

/// How a crash treats writes that no barrier covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Each dirty unit persists or is lost at random: loses and tears writes.
    Random,
    /// Every pending write persists (as if the barrier had run).
    PersistAll,
    /// Every pending write is lost.
    LoseAll,
}

#[derive(Debug)]
enum Submitted {
    Read {
        offset: u64,
        buf: AlignedBuf,
        token: u64,
    },
    Write {
        offset: u64,
        buf: AlignedBuf,
        token: u64,
    },
    Barrier {
        token: u64,
    },
}

/// Counts of what the simulated disk did, for summaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    pub writes: u64,
    pub barriers: u64,
    pub misdirected_writes: u64,
    pub bit_flips: u64,
    pub read_errors: u64,
    pub units_persisted_at_crash: u64,
    pub units_lost_at_crash: u64,
    pub crashes: u64,
}

#[derive(Debug)]
pub struct SimDisk {
    current: Vec<u8>,
    durable: Vec<u8>,
    dirty: BTreeSet<u64>,
    /// Submitted I/O not yet carried out: in flight. Carried out, in order, by `poll`.
    submitted: VecDeque<Submitted>,
    completed: VecDeque<Completion>,
    rng: Rng,
    faults: SimFaults,
    zones: Vec<Range<u64>>,
    latent_read_errors: BTreeSet<u64>,
    misdirect_next_write: Option<u64>,
    fail_next_write: bool,
    fail_next_barrier: bool,
    stats: SimDiskStats,
}

impl SimDisk {
    /// A zero-filled simulated disk of `size` bytes whose faults follow from `seed`.
    #[must_use]
    pub fn new(size: u64, seed: u64) -> SimDisk {
        let len = usize::try_from(size).expect("invariant: simulated disk fits in memory");
        check_io(size, 0, len);
        SimDisk {
            current: vec![0; len],
            durable: vec![0; len],
            dirty: BTreeSet::new(),
            submitted: VecDeque::new(),
            completed: VecDeque::new(),
            rng: Rng::new(seed),
            faults: SimFaults::default(),
            zones: std::iter::once(0..size).collect(),
            latent_read_errors: BTreeSet::new(),
            misdirect_next_write: None,
            fail_next_write: false,
            fail_next_barrier: false,
            stats: SimDiskStats::default(),
        }
    }

    pub fn set_faults(&mut self, faults: SimFaults) {
        self.faults = faults;
    }

    /// Confines misdirected writes: a write meant for a zone lands, if misdirected, elsewhere
    /// in the same zone (as a firmware bug would, within one file's extent).
    pub fn set_zones(&mut self, zones: Vec<Range<u64>>) {
        for zone in &zones {
            assert!(zone.start % SECTOR_SIZE as u64 == 0 && zone.end % SECTOR_SIZE as u64 == 0);
            assert!(zone.end <= self.size());
        }
        self.zones = zones;
    }

    #[must_use]
    pub fn stats(&self) -> SimDiskStats {
        self.stats
    }

    /// Flips one bit, in both layers: sticky corruption of data already on the disk.
    pub fn flip_bit(&mut self, byte_offset: u64, bit: u8) {
        let index = byte_offset as usize;
        self.current[index] ^= 1 << (bit % 8);
        self.durable[index] ^= 1 << (bit % 8);
        self.stats.bit_flips += 1;
    }

    /// Every later read touching the sector at `offset` fails.
    pub fn add_latent_read_error(&mut self, offset: u64) {
        self.latent_read_errors.insert(offset / SECTOR_SIZE as u64);
    }

    /// The next write lands at `offset` instead of its own offset.
    pub fn misdirect_next_write(&mut self, offset: u64) {
        self.misdirect_next_write = Some(offset);
    }

    pub fn fail_next_write(&mut self) {
        self.fail_next_write = true;
    }

    pub fn fail_next_barrier(&mut self) {
        self.fail_next_barrier = true;
    }

    /// Writes in flight or not yet covered by a barrier, measured in tear units.
    #[must_use]
    pub fn pending_units(&self) -> usize {
        self.dirty.len()
    }

    /// Simulates power loss: I/O in flight is forgotten and every write no barrier covered
    /// persists or is lost according to `mode`. The disk can then be reopened as it stands.
    pub fn crash(&mut self, mode: CrashMode) {
        // Writes still in flight reach the media unit by unit, or not at all.
        for submitted in std::mem::take(&mut self.submitted) {
            if let Submitted::Write { offset, buf, .. } = submitted {
                for (i, unit) in buf.as_slice().chunks(TEAR_SIZE).enumerate() {
                    let persist = match mode {
                        CrashMode::PersistAll => true,
                        CrashMode::LoseAll => false,
                        CrashMode::Random => self.rng.chance(1, 2),
                    };
                    let start = offset as usize + i * TEAR_SIZE;
                    if persist {
                        self.durable[start..start + TEAR_SIZE].copy_from_slice(unit);
                        self.stats.units_persisted_at_crash += 1;
                    } else {
                        self.stats.units_lost_at_crash += 1;
                    }
                }
            }
        }
        let dirty = std::mem::take(&mut self.dirty);
        for unit in dirty {
            let persist = match mode {
                CrashMode::PersistAll => true,
                CrashMode::LoseAll => false,
                CrashMode::Random => self.rng.chance(1, 2),
            };
            let range = unit as usize * TEAR_SIZE..(unit as usize + 1) * TEAR_SIZE;
            if persist {
                self.durable[range.clone()].copy_from_slice(&self.current[range]);
                self.stats.units_persisted_at_crash += 1;
            } else {
                self.stats.units_lost_at_crash += 1;
            }
        }
        self.current.copy_from_slice(&self.durable);
        self.completed.clear();
        self.misdirect_next_write = None;
        self.fail_next_write = false;
        self.fail_next_barrier = false;
        self.stats.crashes += 1;
    }

    fn misdirect_target(&mut self, offset: u64, len: usize) -> Option<u64> {
        if let Some(target) = self.misdirect_next_write.take() {
            return Some(target);
        }
        if !self
            .rng
            .chance(u64::from(self.faults.misdirect_ppm), 1_000_000)
        {
            return None;
        }
        let zone = self
            .zones
            .iter()
            .find(|zone| zone.contains(&offset))?
            .clone();
        let sectors = (zone.end - zone.start) / SECTOR_SIZE as u64;
        let len_sectors = (len / SECTOR_SIZE) as u64;
        if sectors <= len_sectors {
            return None;
        }
        let target = zone.start + self.rng.below(sectors - len_sectors + 1) * SECTOR_SIZE as u64;
        (target != offset).then_some(target)
    }

    fn read_fails(&mut self, offset: u64, len: usize) -> bool {
        let first = offset / SECTOR_SIZE as u64;
        let last = (offset + len as u64 - 1) / SECTOR_SIZE as u64;
        self.latent_read_errors.range(first..=last).next().is_some()
            || (self.in_zone(offset)
                && self
                    .rng
                    .chance(u64::from(self.faults.read_error_ppm), 1_000_000))
    }

    /// Random faults strike only inside the configured zones (the fault atlas decides them).
    fn in_zone(&self, offset: u64) -> bool {
        self.zones.iter().any(|zone| zone.contains(&offset))
    }
}

impl SimDisk {
    fn perform(&mut self, submitted: Submitted) {
        match submitted {
            Submitted::Read { offset, buf, token } => self.perform_read(offset, buf, token),
            Submitted::Write { offset, buf, token } => self.perform_write(offset, buf, token),
            Submitted::Barrier { token } => self.perform_barrier(token),
        }
    }

    fn perform_read(&mut self, offset: u64, mut buf: AlignedBuf, token: u64) {
        let result = if self.read_fails(offset, buf.len()) {
            self.stats.read_errors += 1;
            buf.clear();
            Err(DiskError::Read {
                offset,
                len: buf.len(),
                reason: "simulated media error".to_owned(),
            })
        } else {
            let start = offset as usize;
            let len = buf.len();
            buf.as_mut_slice()
                .copy_from_slice(&self.current[start..start + len]);
            Ok(())
        };
        self.completed.push_back(Completion {
            token,
            kind: IoKind::Read,
            result,
            buf: Some(buf),
        });
    }

    fn perform_write(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        self.stats.writes += 1;
        if std::mem::take(&mut self.fail_next_write) {
            let result = Err(DiskError::Write {
                offset,
                len: buf.len(),
                reason: "simulated write error".to_owned(),
            });
            self.completed.push_back(Completion {
                token,
                kind: IoKind::Write,
                result,
                buf: Some(buf),
            });
            return;
        }
        let landed = match self.misdirect_target(offset, buf.len()) {
            Some(target) => {
                self.stats.misdirected_writes += 1;
                target
            }
            None => offset,
        };
        let start = landed as usize;
        self.current[start..start + buf.len()].copy_from_slice(buf.as_slice());
        // A rewritten sector is remapped by the drive: its latent read error is gone.
        let first_sector = landed / SECTOR_SIZE as u64;
        let sectors = (buf.len() / SECTOR_SIZE) as u64;
        let healed: Vec<u64> = self
            .latent_read_errors
            .range(first_sector..first_sector + sectors)
            .copied()
            .collect();
        for sector in healed {
            self.latent_read_errors.remove(&sector);
        }
        if self.in_zone(landed)
            && self
                .rng
                .chance(u64::from(self.faults.bit_flip_ppm), 1_000_000)
        {
            let byte = start + self.rng.below(buf.len() as u64) as usize;
            self.current[byte] ^= 1 << self.rng.below(8);
            self.stats.bit_flips += 1;
        }
        let first_unit = landed / TEAR_SIZE as u64;
        let units = (buf.len() / TEAR_SIZE) as u64;
        self.dirty.extend(first_unit..first_unit + units);
        self.completed.push_back(Completion {
            token,
            kind: IoKind::Write,
            result: Ok(()),
            buf: Some(buf),
        });
    }

    fn perform_barrier(&mut self, token: u64) {
        self.stats.barriers += 1;
        let result = if std::mem::take(&mut self.fail_next_barrier) {
            Err(DiskError::Barrier {
                reason: "simulated fdatasync error".to_owned(),
            })
        } else {
            for unit in std::mem::take(&mut self.dirty) {
                let range = unit as usize * TEAR_SIZE..(unit as usize + 1) * TEAR_SIZE;
                self.durable[range.clone()].copy_from_slice(&self.current[range]);
            }
            Ok(())
        };
        self.completed.push_back(Completion {
            token,
            kind: IoKind::Barrier,
            result,
            buf: None,
        });
    }
}

impl VirtualDisk for SimDisk {
    fn size(&self) -> u64 {
        self.current.len() as u64
    }

    fn submit_read(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        check_io(self.size(), offset, buf.len());
        self.submitted
            .push_back(Submitted::Read { offset, buf, token });
    }

    fn submit_write(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        check_io(self.size(), offset, buf.len());
        self.submitted
            .push_back(Submitted::Write { offset, buf, token });
    }

    fn submit_barrier(&mut self, token: u64) {
        self.submitted.push_back(Submitted::Barrier { token });
    }

    /// Carries out everything in flight, in submission order, and hands back completions.
    fn poll(&mut self, out: &mut Vec<Completion>) {
        while let Some(submitted) = self.submitted.pop_front() {
            self.perform(submitted);
        }
        out.extend(self.completed.drain(..));
    }

    fn wait(&mut self, out: &mut Vec<Completion>) {
        self.poll(out);
    }

    fn in_flight(&self) -> usize {
        self.submitted.len() + self.completed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::drain;

    fn write(disk: &mut SimDisk, offset: u64, fill: u8) {
        let mut buf = AlignedBuf::zeroed(SECTOR_SIZE);
        buf.as_mut_slice().fill(fill);
        disk.submit_write(offset, buf, 0);
    }

    fn read(disk: &mut SimDisk, offset: u64) -> Vec<u8> {
        disk.submit_read(offset, AlignedBuf::zeroed(SECTOR_SIZE), 0);
        let mut out = Vec::new();
        drain(disk, &mut out);
        out.pop()
            .and_then(|c| c.buf)
            .expect("read returns its buffer")
            .as_slice()
            .to_vec()
    }

    // A crash keeps barriered writes, and each unbarriered 512-byte unit, whether its write
    // completed or was still in flight, independently persists or not: over many crashes both
    // outcomes, and torn mixes, must appear.
    #[test]
    fn crash_loses_and_tears_unbarriered_writes() {
        let mut torn = 0;
        let mut lost = 0;
        for seed in 0..64 {
            let mut disk = SimDisk::new(4 * SECTOR_SIZE as u64, seed);
            write(&mut disk, 0, 1);
            disk.submit_barrier(1);
            drain(&mut disk, &mut Vec::new());
            write(&mut disk, SECTOR_SIZE as u64, 2);
            if seed % 2 == 0 {
                // Completed but not barriered; otherwise still in flight.
                drain(&mut disk, &mut Vec::new());
            }
            disk.crash(CrashMode::Random);
            assert!(
                read(&mut disk, 0).iter().all(|&b| b == 1),
                "barriered write lost"
            );
            let second = read(&mut disk, SECTOR_SIZE as u64);
            let new_units = second
                .chunks(TEAR_SIZE)
                .filter(|u| u.iter().all(|&b| b == 2))
                .count();
            let old_units = second
                .chunks(TEAR_SIZE)
                .filter(|u| u.iter().all(|&b| b == 0))
                .count();
            assert_eq!(
                new_units + old_units,
                SECTOR_SIZE / TEAR_SIZE,
                "units are atomic"
            );
            if new_units == 0 {
                lost += 1;
            } else if old_units > 0 {
                torn += 1;
            }
        }
        assert!(torn > 0 && lost > 0, "torn {torn}, lost {lost}");
    }

    // A misdirected write leaves its own target untouched and lands elsewhere in its zone.
    #[test]
    fn misdirected_write_lands_in_zone() {
        let mut disk = SimDisk::new(8 * SECTOR_SIZE as u64, 7);
        disk.set_zones(vec![
            0..4 * SECTOR_SIZE as u64,
            4 * SECTOR_SIZE as u64..8 * SECTOR_SIZE as u64,
        ]);
        disk.set_faults(SimFaults {
            misdirect_ppm: 1_000_000,
            ..SimFaults::default()
        });
        write(&mut disk, 0, 9);
        assert!(read(&mut disk, 0).iter().all(|&b| b == 0));
        let landed = (1..4)
            .filter(|s| read(&mut disk, s * SECTOR_SIZE as u64)[0] == 9)
            .count();
        assert_eq!(landed, 1);
        assert_eq!(disk.stats().misdirected_writes, 1);
    }

    // Latent read errors are sticky; bit flips survive a re-read.
    #[test]
    fn corruption_and_read_errors_are_sticky() {
        let mut disk = SimDisk::new(2 * SECTOR_SIZE as u64, 1);
        write(&mut disk, 0, 0xff);
        disk.submit_barrier(0);
        drain(&mut disk, &mut Vec::new());
        disk.flip_bit(10, 3);
        assert_eq!(read(&mut disk, 0)[10], 0xff ^ 8);
        assert_eq!(read(&mut disk, 0)[10], 0xff ^ 8);
        disk.add_latent_read_error(SECTOR_SIZE as u64);
        for _ in 0..2 {
            disk.submit_read(SECTOR_SIZE as u64, AlignedBuf::zeroed(SECTOR_SIZE), 5);
            let mut out = Vec::new();
            drain(&mut disk, &mut out);
            assert!(matches!(out[0].result, Err(DiskError::Read { .. })));
        }
    }
}
