//! Checked access to the calling instance's linear memory. Every pointer and length comes
//! from the guest: each access is bounds-checked against the memory's current size, and values
//! are copied out once (no double fetch).

use super::abi::errno;

/// A call's iovecs, (buffer, length) each: inline up to four, the usual count.
pub type Iovecs = smallvec::SmallVec<[(u32, u32); 4]>;
/// Bytes copied out of or into guest memory for one call: inline up to 256 (most writes of a
/// line of output), so the usual call does not allocate.
pub type Bytes = smallvec::SmallVec<[u8; 256]>;

pub type Errno = u16;

/// Largest single read or write moved per call (a shorter transfer is legal).
pub const MAX_TRANSFER: usize = 16 << 20;

pub struct Mem<'a> {
    bytes: &'a mut [u8],
}

impl<'a> Mem<'a> {
    pub fn new(bytes: &'a mut [u8]) -> Mem<'a> {
        Mem { bytes }
    }

    fn range(&self, ptr: u32, len: u32) -> Result<std::ops::Range<usize>, Errno> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(errno::FAULT)?;
        if end > self.bytes.len() {
            return Err(errno::FAULT);
        }
        Ok(start..end)
    }

    pub fn slice(&self, ptr: u32, len: u32) -> Result<&[u8], Errno> {
        let r = self.range(ptr, len)?;
        Ok(&self.bytes[r])
    }

    pub fn slice_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8], Errno> {
        let r = self.range(ptr, len)?;
        Ok(&mut self.bytes[r])
    }

    pub fn read_u32(&self, ptr: u32) -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(self.slice(ptr, 4)?.try_into().unwrap()))
    }

    pub fn read_u64(&self, ptr: u32) -> Result<u64, Errno> {
        Ok(u64::from_le_bytes(self.slice(ptr, 8)?.try_into().unwrap()))
    }

    pub fn write(&mut self, ptr: u32, data: &[u8]) -> Result<(), Errno> {
        self.slice_mut(ptr, data.len() as u32)?.copy_from_slice(data);
        Ok(())
    }

    pub fn write_u32(&mut self, ptr: u32, v: u32) -> Result<(), Errno> {
        self.write(ptr, &v.to_le_bytes())
    }

    pub fn write_u64(&mut self, ptr: u32, v: u64) -> Result<(), Errno> {
        self.write(ptr, &v.to_le_bytes())
    }

    /// A guest string (path, name): copied out, must be UTF-8 without NUL.
    pub fn string(&self, ptr: u32, len: u32) -> Result<String, Errno> {
        let bytes = self.slice(ptr, len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| errno::ILSEQ)?;
        if s.contains('\0') {
            return Err(errno::INVAL);
        }
        Ok(s.to_string())
    }

    /// An iovec/ciovec array, copied out and each buffer checked.
    pub fn iovecs(&self, ptr: u32, count: u32) -> Result<Iovecs, Errno> {
        if count > super::abi::IOV_MAX {
            return Err(errno::INVAL);
        }
        let raw = self.slice(ptr, count.checked_mul(8).ok_or(errno::FAULT)?)?;
        let mut out = Iovecs::with_capacity(count as usize);
        let mut total: u64 = 0;
        for c in raw.chunks_exact(8) {
            let buf = u32::from_le_bytes(c[0..4].try_into().unwrap());
            let len = u32::from_le_bytes(c[4..8].try_into().unwrap());
            self.range(buf, len)?;
            total += len as u64;
            out.push((buf, len));
        }
        if total > u32::MAX as u64 {
            return Err(errno::INVAL);
        }
        Ok(out)
    }

    /// Gather the bytes of a ciovec array (for writes), at most `MAX_TRANSFER` of them (a
    /// short write is legal). The cap matters: iovecs may overlap, so 1024 of them over the same
    /// 4 GiB memory would otherwise make the host allocate and copy up to 4 GiB per call.
    pub fn gather(&self, iovs: &[(u32, u32)], data: &mut Bytes) -> Result<(), Errno> {
        data.clear();
        for &(buf, len) in iovs {
            let room = MAX_TRANSFER - data.len();
            let bytes = self.slice(buf, len)?;
            data.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        Ok(())
    }

    /// Scatter `data` into an iovec array (for reads); returns the bytes placed.
    pub fn scatter(&mut self, iovs: &[(u32, u32)], data: &[u8]) -> Result<usize, Errno> {
        let mut done = 0;
        for &(buf, len) in iovs {
            if done == data.len() {
                break;
            }
            let n = (len as usize).min(data.len() - done);
            self.write(buf, &data[done..done + n])?;
            done += n;
        }
        Ok(done)
    }
}
