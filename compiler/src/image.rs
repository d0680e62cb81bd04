//! Memory images: the initial contents of a module's memory as whole pages, so that a loader
//! can map them copy-on-write instead of copying every data segment into every instance.
//!
//! A module has an image when applying its active data segments cannot trap and depends on
//! nothing but the module: memory 0 is defined by the module (not imported), every active
//! segment writes memory 0 at a constant `i32.const` offset, and every segment ends within the
//! memory's minimum size (which is the size at instantiation). Then the memory after the data
//! segments equals a fixed byte string over `[offset, offset + len)` and zeros elsewhere, and
//! `build` computes that string by applying the segments in order, as instantiation would.
//!
//! The plan is a pure function of the `ModuleInfo`, so it is never stored: the compiler and
//! every loader recompute it and agree. An image much larger than the data it holds (segments
//! far apart) is not worth mapping, and then the module has none.

use crate::module::{ConstExpr, DataMode, ModuleInfo};

/// Granule of an image: the host page, so that it can be mapped.
pub const IMAGE_PAGE: u64 = 4096;

/// An image larger than this must be no more than `SPARSE_FACTOR` times its data.
const SMALL_IMAGE: u64 = 1 << 20;
const SPARSE_FACTOR: u64 = 2;

/// Where a module's memory image lies in memory 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImagePlan {
    /// Byte offset in the memory (a multiple of `IMAGE_PAGE`).
    pub offset: u64,
    /// Bytes of image (a multiple of `IMAGE_PAGE`, not zero).
    pub len: u64,
}

impl ImagePlan {
    /// The image plan of `info`, or `None` if its memory must be initialised segment by
    /// segment.
    pub fn of(info: &ModuleInfo) -> Option<ImagePlan> {
        if info.num_imported_memories != 0 {
            return None;
        }
        let min_bytes = info.memories.first()?.min.checked_mul(65536)?;
        let (mut lo, mut hi, mut data) = (u64::MAX, 0u64, 0u64);
        for seg in &info.datas {
            let DataMode::Active { memory, offset } = &seg.mode else { continue };
            let ConstExpr::I32(start) = offset else { return None };
            let start = *start as u32 as u64;
            let len = seg.range.len() as u64;
            let end = start + len;
            if *memory != 0 || end > min_bytes {
                return None;
            }
            if len > 0 {
                lo = lo.min(start);
                hi = hi.max(end);
                data += len;
            }
        }
        if data == 0 {
            return None;
        }
        let offset = lo / IMAGE_PAGE * IMAGE_PAGE;
        let len = hi.div_ceil(IMAGE_PAGE) * IMAGE_PAGE - offset;
        if len > SMALL_IMAGE && len > SPARSE_FACTOR * data {
            return None;
        }
        Some(ImagePlan { offset, len })
    }

    /// The image's bytes: the active segments applied in order over zeros.
    pub fn build(&self, info: &ModuleInfo) -> Vec<u8> {
        let mut image = vec![0u8; self.len as usize];
        for seg in &info.datas {
            if let DataMode::Active { offset: ConstExpr::I32(start), .. } = &seg.mode {
                let bytes = info.data(seg);
                if !bytes.is_empty() {
                    let at = (*start as u32 as u64 - self.offset) as usize;
                    image[at..at + bytes.len()].copy_from_slice(bytes);
                }
            }
        }
        image
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::{DataSegment, MemoryType};

    fn info(min: u64, segs: &[(i32, &[u8])]) -> ModuleInfo {
        let mut info = ModuleInfo { memories: vec![MemoryType { min, max: None, shared: false, memory64: false }], ..Default::default() };
        for (at, bytes) in segs {
            let start = info.data_bytes.len();
            info.data_bytes.extend_from_slice(bytes);
            let mode = DataMode::Active { memory: 0, offset: ConstExpr::I32(*at) };
            info.datas.push(DataSegment { mode, range: start..info.data_bytes.len() });
        }
        info
    }

    #[test]
    fn later_segments_overwrite_earlier_ones() {
        let i = info(1, &[(4100, b"abcd"), (4102, b"XY"), (9000, b"z")]);
        let plan = ImagePlan::of(&i).unwrap();
        assert_eq!(plan, ImagePlan { offset: 4096, len: 8192 });
        let image = plan.build(&i);
        assert_eq!(&image[4..8], b"abXY");
        assert_eq!(image[9000 - 4096], b'z');
        assert_eq!(image.iter().filter(|b| **b != 0).count(), 5);
    }

    #[test]
    fn no_image_when_a_segment_could_trap_or_is_dynamic() {
        assert_eq!(ImagePlan::of(&info(1, &[(65535, b"ab")])), None, "ends past the minimum");
        assert_eq!(ImagePlan::of(&info(1, &[(-1, b"a")])), None, "offset is unsigned");
        assert_eq!(ImagePlan::of(&info(1, &[(0, b"")])), None, "nothing to map");
        let mut g = info(1, &[(0, b"a")]);
        g.datas[0].mode = DataMode::Active { memory: 0, offset: ConstExpr::GlobalGet(0) };
        assert_eq!(ImagePlan::of(&g), None, "offset from an import");
        let ext = [crate::module::ConstOp::GlobalGet(0), crate::module::ConstOp::I32(4), crate::module::ConstOp::I32Add];
        g.datas[0].mode = DataMode::Active { memory: 0, offset: ConstExpr::Extended(ext.into()) };
        assert_eq!(ImagePlan::of(&g), None, "extended offset reading an import");
        let mut imported = info(1, &[(0, b"a")]);
        imported.num_imported_memories = 1;
        assert_eq!(ImagePlan::of(&imported), None, "someone else's memory");
    }

    #[test]
    fn sparse_images_are_not_worth_it() {
        assert_eq!(ImagePlan::of(&info(100, &[(0, b"a"), (5 << 20, b"b")])), None);
        assert!(ImagePlan::of(&info(100, &[(0, b"a"), (1 << 19, b"b")])).is_some());
    }
}
