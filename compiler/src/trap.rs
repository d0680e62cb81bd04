//! Trap codes: the one table that states what each trap is called, which Cranelift trap code
//! carries it, and the message the spec suite and wasmtime print for it.

use cranelift_codegen::ir::TrapCode as ClifTrap;

macro_rules! traps {
    ($( $variant:ident = $num:literal, $message:literal; )*) => {
        /// A WebAssembly trap, as recorded in a module's trap table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Trap {
            $( $variant = $num, )*
        }

        impl Trap {
            /// Every trap, in table order.
            pub const ALL: &'static [Trap] = &[$(Trap::$variant,)*];

            /// The message the spec suite expects for this trap.
            pub fn message(self) -> &'static str {
                match self { $( Trap::$variant => $message, )* }
            }

            /// Decode the byte stored in a trap table.
            pub fn from_u8(byte: u8) -> Option<Trap> {
                match byte { $( $num => Some(Trap::$variant), )* _ => None }
            }
        }
    };
}

traps! {
    StackOverflow = 1, "call stack exhausted";
    MemoryOutOfBounds = 2, "out of bounds memory access";
    HeapMisaligned = 3, "unaligned atomic";
    TableOutOfBounds = 4, "undefined element";
    IndirectCallToNull = 5, "uninitialized element";
    BadSignature = 6, "indirect call type mismatch";
    IntegerOverflow = 7, "integer overflow";
    IntegerDivisionByZero = 8, "integer divide by zero";
    BadConversionToInteger = 9, "invalid conversion to integer";
    UnreachableCodeReached = 10, "unreachable";
    Interrupt = 11, "interrupt";
    OutOfFuel = 12, "all fuel consumed by WebAssembly";
    // HostError: a host function or builtin reported an error; the runtime holds the details.
    HostError = 13, "host function error";
    // TableAccessOutOfBounds: table.get/set/copy/init/fill out of bounds.
    TableAccessOutOfBounds = 14, "out of bounds table access";
    NullReference = 15, "null reference";
    // AtomicWaitNonShared: memory.atomic.wait32/64 on a memory that is not shared.
    AtomicWaitNonShared = 16, "expected shared memory";
    // NullFunctionReference: call_ref / return_call_ref of a null reference.
    NullFunctionReference = 17, "null function reference";
    // throw_ref of a null exnref.
    NullExnReference = 24, "null exception reference";
    // GC.
    CastFailure = 18, "cast failure";
    NullStructReference = 19, "null structure reference";
    NullArrayReference = 20, "null array reference";
    NullI31Reference = 21, "null i31 reference";
    ArrayOutOfBounds = 22, "out of bounds array access";
    // GcHeapOutOfMemory: the store's GC heap limit (`max_gc_heap_bytes`) is reached (any
    // allocation, however large).
    GcHeapOutOfMemory = 23, "GC heap out of memory";
}

impl Trap {
    /// The Cranelift trap code that stands for this trap in generated code.
    pub fn to_clif(self) -> ClifTrap {
        match self {
            Trap::StackOverflow => ClifTrap::STACK_OVERFLOW,
            Trap::MemoryOutOfBounds => ClifTrap::HEAP_OUT_OF_BOUNDS,
            Trap::IntegerOverflow => ClifTrap::INTEGER_OVERFLOW,
            Trap::IntegerDivisionByZero => ClifTrap::INTEGER_DIVISION_BY_ZERO,
            Trap::BadConversionToInteger => ClifTrap::BAD_CONVERSION_TO_INTEGER,
            other => ClifTrap::unwrap_user(other as u8),
        }
    }

    /// The trap a Cranelift trap code stands for.
    pub fn from_clif(code: ClifTrap) -> Option<Trap> {
        Some(match code {
            ClifTrap::STACK_OVERFLOW => Trap::StackOverflow,
            ClifTrap::HEAP_OUT_OF_BOUNDS => Trap::MemoryOutOfBounds,
            ClifTrap::INTEGER_OVERFLOW => Trap::IntegerOverflow,
            ClifTrap::INTEGER_DIVISION_BY_ZERO => Trap::IntegerDivisionByZero,
            ClifTrap::BAD_CONVERSION_TO_INTEGER => Trap::BadConversionToInteger,
            other => return Trap::from_u8(other.as_raw().get()),
        })
    }
}

impl std::fmt::Display for Trap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trap_round_trips_through_cranelift() {
        for &trap in Trap::ALL {
            assert_eq!(Trap::from_clif(trap.to_clif()), Some(trap));
            assert_eq!(Trap::from_u8(trap as u8), Some(trap));
        }
    }
}
