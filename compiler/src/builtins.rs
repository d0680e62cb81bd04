//! Builtins: the runtime functions compiled code calls through the vmctx's builtin table.
//! One table states each builtin's index, arity and the trap it raises when it returns non-zero;
//! the engine provides the implementations (host functions in process mode, hypercall
//! trampolines in the VM).
//!
//! Every builtin takes the caller's vmctx first and then `ARGS` 64-bit integer arguments, and
//! returns a 64-bit integer.

use crate::trap::Trap;
use cranelift_codegen::isa::CallConv;

/// Builtins are `extern "C"` functions in process mode and System V routines in the VM.
pub const BUILTIN_CALL_CONV: CallConv = CallConv::SystemV;

macro_rules! builtins {
    ($( $variant:ident($args:literal) $(traps $trap:ident)?; )*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Builtin { $( $variant, )* }

        impl Builtin {
            pub const ALL: &'static [Builtin] = &[$(Builtin::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// Number of integer arguments after the vmctx.
            pub fn args(self) -> usize {
                match self { $( Builtin::$variant => $args, )* }
            }

            /// The trap raised when the builtin returns non-zero; `None` when the result is a value.
            pub fn trap(self) -> Option<Trap> {
                match self { $( Builtin::$variant => builtins!(@trap $($trap)?), )* }
            }
        }
    };
    (@trap $trap:ident) => { Some(Trap::$trap) };
    (@trap) => { None };
}

builtins! {
    // (memory, delta pages) -> old size in pages, or -1
    MemoryGrow(2);
    // (address of the memory's VMMemoryDef, dst, byte, len) -> status
    MemoryFill(4) traps MemoryOutOfBounds;
    // (dst VMMemoryDef address, src VMMemoryDef address, dst, src, len) -> status
    MemoryCopy(5) traps MemoryOutOfBounds;
    // (memory, data segment, dst, src, len) -> status
    MemoryInit(5) traps MemoryOutOfBounds;
    // (data segment) -> 0
    DataDrop(1);
    // (table, delta, init ref) -> old size, or -1
    TableGrow(3);
    // (table, dst, ref, len) -> status
    TableFill(4) traps TableAccessOutOfBounds;
    // (dst table, src table, dst, src, len) -> status
    TableCopy(5) traps TableAccessOutOfBounds;
    // (table, elem segment, dst, src, len) -> status
    TableInit(5) traps TableAccessOutOfBounds;
    // (elem segment) -> 0
    ElemDrop(1);
    // (host function id, address of the value array) -> status
    HostCall(2) traps HostError;
    // (timeout in ns, negative: none) -> 0 once it has passed; non-zero: the call's deadline
    // passed first (the store holds the interrupt). `memory.atomic.wait` on a shared memory
    // whose value matched: in a one-thread store nothing can notify it.
    MemoryAtomicWait(1) traps HostError;
    // (object size) -> address of a fresh exception object of that size from a new chunk (the
    // state's next/end then describe the rest of the chunk), or 0 (limit; the host holds the error)
    ExnAlloc(1);
    // GC. (object size in bytes) -> address of a fresh zeroed object of that size from a new
    // chunk (the GC state's next/end then describe the rest of it), or 0: the store's GC heap
    // limit (the host holds the error).
    GcAlloc(1);
    // (module type index, data segment, offset, length) -> a new array from the segment's
    // bytes, or 0 (the host holds the trap).
    ArrayNewData(4);
    // (module type index, elem segment, offset, length) -> a new array, or 0.
    ArrayNewElem(4);
    // (array, index, array type << 32 | data segment, offset, length) -> 0, or an error code.
    ArrayInitData(5);
    // (array, index, array type << 32 | elem segment, offset, length) -> 0, or an error code.
    ArrayInitElem(5);
}

/// Error codes of the array builtins (results below `GC_ERR_LIMIT` are errors, not addresses).
pub const GC_ERR_MEMORY: u64 = 1;
pub const GC_ERR_OOM: u64 = 2;
pub const GC_ERR_TABLE: u64 = 3;
pub const GC_ERR_ARRAY: u64 = 4;
pub const GC_ERR_LIMIT: u64 = 16;

impl Builtin {
    /// Offset of this builtin's address in the builtin table.
    pub fn offset(self) -> i32 {
        8 * self as i32
    }
}
