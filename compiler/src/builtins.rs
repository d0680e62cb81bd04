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
}

impl Builtin {
    /// Offset of this builtin's address in the builtin table.
    pub fn offset(self) -> i32 {
        8 * self as i32
    }
}
