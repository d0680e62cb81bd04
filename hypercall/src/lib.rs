//! The ABI shared by the wasce guest runtime (`vmguest`) and the host (`engine`): the guest
//! memory map, hypercall numbers and the register convention. `no_std`, data only.
//!
//! ## Hypercalls
//! On `kvm_pvm` ring-3 `in`/`out` raise #GP (the hypervisor forces IOPL to 0), so a hypercall is
//! an 8-byte **load** from `HCALL_GVA + 8 * number`. That address maps to `HCALL_GPA`, which no
//! memslot backs, so the load leaves the VM as `KVM_EXIT_MMIO`. Arguments are in `rdi, rsi, rdx,
//! rcx, r8, r9` (the System V argument registers, so a builtin trampoline is just the load and a
//! `ret`); the host answers with the 8-byte value the load returns in `rax`.
//!
//! Numbers `0..BUILTIN_COUNT` are the compiler's builtins in `Builtin` order (the guest table
//! at the start of the runtime page points at one trampoline per builtin). `DONE` ends a call
//! started by the host.
//!
//! ## Guest memory map
//! Guest-virtual addresses of host memory that compiled code uses (code images, vmctx arena,
//! linear memories, the stack) equal the host's own addresses; the guest sees only those
//! mappings. The runtime page and the hypercall page sit at fixed low addresses (`RUNTIME_GVA`,
//! `HCALL_GVA`) that the host reserves in its own address space, so no host allocation can ever
//! overlap them. (The upper canonical half is not usable: `kvm_pvm` keeps it for a guest kernel
//! and faults ring-3 accesses there.) The structures the guest must not touch (page tables, GDT,
//! TSS) are mapped at no guest-virtual address at all on kvm_pvm, and supervisor-only (no ring-3
//! access) on standard KVM, where the CPU itself reads them to deliver faults to ring 0.
#![no_std]

pub const PAGE_SIZE: u64 = 4096;

/// Hypercall number that ends a host-initiated call (after the entry trampoline returns).
pub const HCALL_DONE: u64 = 63;
/// Hypercall numbers below this are builtins.
pub const HCALL_MAX_BUILTIN: u64 = 32;
/// Builtin numbers the runtime page serves itself (the engine asserts they match the
/// compiler's table): `HostCall` (over the ring) and the bulk-memory builtins (in the guest).
pub const HCALL_HOST_CALL: u64 = 10;
pub const HCALL_MEMORY_FILL: u64 = 1;
pub const HCALL_MEMORY_COPY: u64 = 2;
/// How many times the ring trampoline polls for completion before cancelling (~`pause` each).
pub const RING_SPIN: u64 = 1000;
/// Hypercall: the ring server has taken my request; let the vCPU thread wait for it (used by
/// the ring trampoline when a host call runs long, so the guest does not spin).
pub const HCALL_RING_WAIT: u64 = 62;
/// Hypercall made by the ring-0 fault handlers (standard KVM only, see `FAULT_GVA`): an
/// exception happened; its frame is on the fault stack. Honoured only at CPL0.
pub const HCALL_FAULT: u64 = 61;

// ---- Guest-physical layout ---------------------------------------------------------------------

/// Slot 0: host-owned system memory (GDT, TSS, runtime page, page-table pool).
pub const SYSTEM_GPA: u64 = 0;
pub const SYSTEM_SIZE: u64 = 64 << 20;
pub const GDT_GPA: u64 = 0x1000;
pub const TSS_GPA: u64 = 0x2000;
/// 104-byte TSS header plus an I/O bitmap page (unused on kvm_pvm, required shape on VMX).
pub const TSS_LIMIT: u64 = 0x2068;
/// The runtime page (entry stub, builtin table and trampolines), read-execute to the guest.
pub const RUNTIME_GPA: u64 = 0x5000;
/// The host-call ring page (read-write to the guest at `RING_GVA`).
pub const RING_GPA: u64 = 0x6000;
/// Fault delivery on standard KVM (kvm_intel, kvm_amd), where a triple fault resets the vCPU:
/// the IDT (256 interrupt gates to `FAULT_GPA`), the fault handlers' code (ring 0) and the
/// stack they run on (`TSS.RSP0`). Mapped supervisor-only: ring-3 code can neither read, write
/// nor execute them. Unused on kvm_pvm, which delivers no exception through an IDT.
pub const IDT_GPA: u64 = 0x7000;
pub const FAULT_GPA: u64 = 0x8000;
pub const FAULT_STACK_GPA: u64 = 0x9000;
/// Page tables are allocated from here to the end of slot 0.
pub const PT_POOL_GPA: u64 = 0x10000;
/// Where the hypercall "device" sits: no memslot backs this page.
pub const HCALL_GPA: u64 = 0xF000_0000;
/// Guest-physical addresses of mapped host memory are allocated upward from here.
pub const DYNAMIC_GPA: u64 = 1 << 32;
/// The in-kernel local APIC's page (the split irqchip, `Vm::new`): KVM may put a memslot of its
/// own there (APICv, AVIC), and no guest mapping may lead to it. Checked below to lie outside
/// slot 0, off the hypercall page and below the dynamic range.
pub const APIC_GPA: u64 = 0xFEE0_0000;

// ---- Guest-virtual layout ----------------------------------------------------------------------

/// Start of the fixed low window the host reserves for the guest runtime.
pub const RESERVED_GVA: u64 = 0x0010_0000;
pub const RESERVED_SIZE: u64 = 0x0010_0000;
/// The runtime page.
pub const RUNTIME_GVA: u64 = RESERVED_GVA;
/// The hypercall page.
pub const HCALL_GVA: u64 = RESERVED_GVA + 0x1_0000;
/// The host-call ring page.
pub const RING_GVA: u64 = RESERVED_GVA + 0x3_0000;
/// The system window: slot 0's pages from `GDT_GPA` to the end of the fault stack, at
/// `SYSTEM_WINDOW_GVA + gpa`, supervisor-only. Mapped only where faults are delivered through
/// the IDT (the CPU then reads the GDT, TSS and IDT and runs the handlers); elsewhere these
/// addresses are only descriptor fields.
pub const SYSTEM_WINDOW_GVA: u64 = RESERVED_GVA + 0x4_0000;
pub const GDT_GVA: u64 = SYSTEM_WINDOW_GVA + GDT_GPA;
pub const TSS_GVA: u64 = SYSTEM_WINDOW_GVA + TSS_GPA;
pub const IDT_GVA: u64 = SYSTEM_WINDOW_GVA + IDT_GPA;
pub const FAULT_GVA: u64 = SYSTEM_WINDOW_GVA + FAULT_GPA;
pub const FAULT_STACK_GVA: u64 = SYSTEM_WINDOW_GVA + FAULT_STACK_GPA;
/// Offset of vector `i`'s handler in the fault page: `FAULT_STUB_SIZE * i`.
pub const FAULT_STUB_SIZE: u64 = 16;
/// Vectors with handlers (the exceptions); gates above point at the last (a spurious vector).
pub const FAULT_VECTORS: u64 = 32;
/// Offset of the common tail of the handlers.
pub const FAULT_COMMON: u64 = FAULT_STUB_SIZE * FAULT_VECTORS;
/// The fault frame, at the fault stack's top when `HCALL_FAULT` is made: what the handler
/// pushed (vector, error code or 0), then what the CPU pushed (RIP, CS, RFLAGS, RSP, SS).
pub const FAULT_FRAME_WORDS: u64 = 7;
/// The lower canonical half: host user-space addresses mapped 1:1.
pub const USER_HALF_END: u64 = 0x0000_8000_0000_0000;

// ---- Runtime page layout -----------------------------------------------------------------------

/// Offset of the builtin table (`[u64; HCALL_MAX_BUILTIN]`, trampoline addresses).
pub const RT_BUILTIN_TABLE: u64 = 0;
/// Offset of the builtin table used with the ring transport (the host fills it: the same as
/// `RT_BUILTIN_TABLE` but for `HostCall`, which goes through the ring trampoline).
pub const RT_BUILTIN_TABLE_RING: u64 = 0x100;
/// Offset of the entry stub: `call rax; <hypercall DONE>; ud2`.
pub const RT_ENTRY: u64 = 0x200;
/// Offset of builtin trampoline `i`: `RT_TRAMPOLINES + RT_TRAMPOLINE_SIZE * i`.
pub const RT_TRAMPOLINES: u64 = 0x280;
pub const RT_TRAMPOLINE_SIZE: u64 = 16;
/// Offset of the exit-free WASI routines (`wasce_vmguest::wasi_routines`).
pub const RT_WASI: u64 = 0x600;

// ---- The host-call ring ------------------------------------------------------------------------
// One slot per vCPU. The guest writes the request and sets SUBMITTED; the host server claims it
// (SUBMITTED -> TAKEN, compare-and-swap), runs it, writes the result and sets DONE; the guest
// reads the result and sets IDLE. A guest that waited too long cancels with a compare-and-swap
// (SUBMITTED -> CANCELLED) and makes the synchronous hypercall instead. The host never trusts
// this page: it reads each field once, validates it like any hypercall argument, and keeps its
// own record of whether it is busy.
pub const RING_STATE: u64 = 0;
pub const RING_FUNC: u64 = 8;
pub const RING_VALUES: u64 = 16;
pub const RING_CALLER: u64 = 24;
pub const RING_RESULT: u64 = 32;
/// Non-zero while the server polls (the guest does not submit to a sleeping server).
pub const RING_AWAKE: u64 = 64;
pub const RING_IDLE: u32 = 0;
pub const RING_SUBMITTED: u32 = 1;
pub const RING_TAKEN: u32 = 2;
pub const RING_DONE: u32 = 3;
pub const RING_CANCELLED: u32 = 4;

// ---- Exit-free WASI calls ------------------------------------------------------------------------
// A WASI function served in the guest is an import whose `VMFuncRef` points at a routine in the
// runtime page, with a per-(instance, import) context as its "vmctx". Anything the routine does
// not handle (an unusual clock, a pointer out of bounds) tail-calls the import's host-call
// trampoline with the original arguments, so semantics and errnos stay the host's.

/// Context: address of the calling instance's memory definition `{base, length}` (0: none).
pub const WCTX_MEMORY: u64 = 0;
/// Context: address of the shared WASI data (`WD_*`).
pub const WCTX_DATA: u64 = 8;
/// Context: the fallback (host-call trampoline) and its callee vmctx (the import record: the
/// address of the import's `VMFuncRef` in the importer's vmctx, the host's key for the import).
pub const WCTX_FALLBACK_CODE: u64 = 16;
pub const WCTX_FALLBACK_VMCTX: u64 = 24;
pub const WCTX_SIZE: u64 = 32;

/// WASI data: counts and sizes (u32), then addresses (u64) of the NUL-terminated strings and
/// of their u32 start offsets, then the clock calibration.
pub const WD_ARGC: u64 = 0;
pub const WD_ARGS_SIZE: u64 = 4;
pub const WD_ENVC: u64 = 8;
pub const WD_ENV_SIZE: u64 = 12;
pub const WD_ARGS: u64 = 16;
pub const WD_ARGS_OFFSETS: u64 = 24;
pub const WD_ENV: u64 = 32;
pub const WD_ENV_OFFSETS: u64 = 40;
/// TSC value at calibration and ns per tick in 32.32 fixed point.
pub const WD_TSC_BASE: u64 = 48;
pub const WD_TSC_MULT: u64 = 56;
/// Clock values (ns) at `WD_TSC_BASE`, indexed by WASI clock id 0 (realtime), 1 (monotonic).
pub const WD_CLOCK_BASE: u64 = 64;
pub const WD_SIZE: u64 = 80;

const _: () = assert!(GDT_GPA + 0x100 <= TSS_GPA);
const _: () = assert!(TSS_GPA + TSS_LIMIT < RUNTIME_GPA);
const _: () = assert!(RUNTIME_GPA + PAGE_SIZE <= RING_GPA && RING_GPA + PAGE_SIZE <= PT_POOL_GPA);
const _: () = assert!(RT_BUILTIN_TABLE_RING >= RT_BUILTIN_TABLE + 8 * HCALL_MAX_BUILTIN);
const _: () = assert!(RT_ENTRY >= RT_BUILTIN_TABLE_RING + 8 * HCALL_MAX_BUILTIN);
const _: () = assert!(RING_GVA >= HCALL_GVA + PAGE_SIZE && RING_GVA + PAGE_SIZE <= RESERVED_GVA + RESERVED_SIZE);
const _: () = assert!(RING_AWAKE >= RING_RESULT + 8 && HCALL_RING_WAIT > HCALL_MAX_BUILTIN && HCALL_RING_WAIT != HCALL_DONE);
const _: () = assert!(PT_POOL_GPA < SYSTEM_GPA + SYSTEM_SIZE);
const _: () = assert!(SYSTEM_GPA + SYSTEM_SIZE <= HCALL_GPA && HCALL_GPA + PAGE_SIZE <= DYNAMIC_GPA);
const _: () = assert!(SYSTEM_GPA + SYSTEM_SIZE <= APIC_GPA && APIC_GPA + PAGE_SIZE <= DYNAMIC_GPA);
const _: () = assert!(APIC_GPA + PAGE_SIZE <= HCALL_GPA || HCALL_GPA + PAGE_SIZE <= APIC_GPA);
const _: () = assert!(RT_TRAMPOLINES + RT_TRAMPOLINE_SIZE * HCALL_MAX_BUILTIN <= PAGE_SIZE);
const _: () = assert!(RT_TRAMPOLINES + RT_TRAMPOLINE_SIZE * HCALL_MAX_BUILTIN <= RT_WASI);
const _: () = assert!(WD_CLOCK_BASE + 16 == WD_SIZE && WCTX_FALLBACK_VMCTX + 8 == WCTX_SIZE);
const _: () = assert!(HCALL_DONE >= HCALL_MAX_BUILTIN && 8 * (HCALL_DONE + 1) <= PAGE_SIZE);
const _: () = assert!(HCALL_GVA >= RUNTIME_GVA + PAGE_SIZE);
const _: () = assert!(RUNTIME_GPA >= TSS_GPA + TSS_LIMIT && RING_GPA + PAGE_SIZE <= IDT_GPA);
const _: () = assert!(IDT_GPA + PAGE_SIZE <= FAULT_GPA && FAULT_GPA + PAGE_SIZE <= FAULT_STACK_GPA);
const _: () = assert!(FAULT_STACK_GPA + PAGE_SIZE <= PT_POOL_GPA);
const _: () = assert!(SYSTEM_WINDOW_GVA >= RING_GVA + PAGE_SIZE);
const _: () = assert!(SYSTEM_WINDOW_GVA + FAULT_STACK_GPA + PAGE_SIZE <= RESERVED_GVA + RESERVED_SIZE);
const _: () = assert!(FAULT_COMMON + 32 <= PAGE_SIZE && HCALL_FAULT > HCALL_MAX_BUILTIN && HCALL_FAULT != HCALL_RING_WAIT);
const _: () = assert!(RESERVED_GVA >= 0x10000 && RESERVED_GVA + RESERVED_SIZE < USER_HALF_END);

/// The guest address a hypercall loads from.
pub const fn hcall_address(number: u64) -> u64 {
    HCALL_GVA + 8 * number
}

/// The hypercall number of an MMIO exit at guest-physical `gpa` with length `len`, if it is one.
pub const fn hcall_number(gpa: u64, len: usize) -> Option<u64> {
    if len == 8 && gpa >= HCALL_GPA && gpa < HCALL_GPA + PAGE_SIZE && gpa.is_multiple_of(8) {
        Some((gpa - HCALL_GPA) / 8)
    } else {
        None
    }
}
