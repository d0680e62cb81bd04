//! Hostile guests: raw machine code run at CPL3 in a store's VM, as if the compiler had been
//! subverted. Each attempt must end as a clean error (never a host crash) and the store must
//! keep working afterwards. Needs /dev/kvm (fails loudly without it).

use super::{Extern, HostcallTransport, Isolation, Store, StoreConfig};
use crate::kvm::Perm;
use crate::{Error, Linker, Settings, Val};
use wasce_hypercall::{hcall_address, HCALL_DONE, PT_POOL_GPA, SYSTEM_SIZE};

const MODULE: &str = r#"(module (memory (export "mem") 1) (func (export "ok") (result i32) (i32.const 42)))"#;

struct Fixture {
    store: Store,
    ok: crate::FuncId,
    vmctx: u64,
    memory_base: u64,
}

fn fixture() -> Fixture {
    fixture_with(HostcallTransport::Ring)
}

fn fixture_with(hostcall: HostcallTransport) -> Fixture {
    let module = crate::load(&wat::parse_str(MODULE).unwrap(), &Settings::default()).unwrap();
    let mut store = Store::new(StoreConfig { isolation: Isolation::Kvm, hostcall, ..StoreConfig::default() }).expect("create a KVM store");
    let instance = Linker::new().instantiate(&mut store, &module).unwrap();
    let Some(Extern::Func(ok)) = store.export(instance, "ok") else { panic!() };
    let Some(Extern::Memory(mem)) = store.export(instance, "mem") else { panic!() };
    let vmctx = store.instances[0].vmctx as u64;
    let memory_base = store.memories[mem.0 as usize].mem.base() as u64;
    Fixture { store, ok, vmctx, memory_base }
}

impl Fixture {
    /// Map `code` read-execute into the guest and enter it like an entry trampoline, with
    /// `values` at rcx. Returns what the call returned and the values array.
    fn run(&mut self, code: &[u8]) -> (Result<(), Error>, Vec<u128>) {
        // SAFETY: a fresh private page for the code, leaked for the test's lifetime.
        let page = unsafe {
            libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        } as *mut u8;
        assert!(page as isize != -1);
        // SAFETY: at most 4096 bytes into the page.
        unsafe {
            std::ptr::write_bytes(page, 0xcc, 4096);
            std::ptr::copy_nonoverlapping(code.as_ptr(), page, code.len());
        }
        self.store.request_map(page as u64, 4096, 4096, Perm::ReadExecute);
        self.store.flush_maps().unwrap();
        let mut values = vec![0u128; 8];
        let r = self.store.call_in_vm(page as u64, 0, self.vmctx, self.vmctx, &mut values);
        (r, values)
    }

    fn still_works(&mut self) {
        assert_eq!(self.store.call(self.ok, &[]).unwrap(), vec![Val::I32(42)]);
    }
}

fn mov_imm64(reg_opcode: u8, value: u64) -> Vec<u8> {
    let mut v = vec![0x48, reg_opcode];
    v.extend_from_slice(&value.to_le_bytes());
    v
}

/// `mov rax, [hypercall n]`
fn hypercall(n: u64) -> Vec<u8> {
    let mut v = vec![0x48, 0xa1];
    v.extend_from_slice(&hcall_address(n).to_le_bytes());
    v
}

/// `mov [rcx + 8*slot], rax`
fn store_rax(slot: u8) -> Vec<u8> {
    vec![0x48, 0x89, 0x41, 8 * slot]
}

fn jump_to(addr: u64) -> Vec<u8> {
    let mut v = mov_imm64(0xb8, addr); // mov rax, addr
    v.extend_from_slice(&[0xff, 0xe0]); // jmp rax
    v
}

fn expect_clean_fault(f: &mut Fixture, code: &[u8], what: &str) {
    let (r, _) = f.run(code);
    match r {
        Err(Error::Resource(msg)) => assert!(msg.contains("faulted") || msg.contains("unbacked"), "{what}: {msg}"),
        other => panic!("{what}: expected a contained fault, got {other:?}"),
    }
    f.still_works();
}

#[test]
fn privileged_instructions_fault_cleanly() {
    let mut f = fixture_with(HostcallTransport::Exit);
    expect_clean_fault(&mut f, &[0x66, 0xba, 0x34, 0x12, 0xee], "out dx, al to an unknown port");
    expect_clean_fault(&mut f, &[0x66, 0xba, 0x34, 0x12, 0xec], "in al, dx");
    expect_clean_fault(&mut f, &[0xf4], "hlt");
    expect_clean_fault(&mut f, &[0xfa], "cli");
    expect_clean_fault(&mut f, &[0x0f, 0x20, 0xd8], "mov rax, cr3");
    expect_clean_fault(&mut f, &[0x0f, 0x01, 0xf8], "swapgs");
}

/// The VM's in-kernel local APIC (the split irqchip, kept for what it saves KVM) is out of the
/// guest's reach: its MSRs are privileged, and no guest mapping leads to its page (its
/// guest-physical address lies outside every range the host maps: a compile-time check in
/// `wasce_hypercall`, next to `APIC_GPA`).
#[test]
fn the_local_apic_is_unreachable() {
    let mut f = fixture_with(HostcallTransport::Exit);
    // mov ecx, 0x1b (IA32_APIC_BASE); rdmsr
    expect_clean_fault(&mut f, &[0xb9, 0x1b, 0x00, 0x00, 0x00, 0x0f, 0x32], "rdmsr IA32_APIC_BASE");
    // mov ecx, 0x80b (x2APIC EOI); xor eax, eax; xor edx, edx; wrmsr
    expect_clean_fault(&mut f, &[0xb9, 0x0b, 0x08, 0x00, 0x00, 0x31, 0xc0, 0x31, 0xd2, 0x0f, 0x30], "wrmsr x2APIC EOI");
    // The APIC's page at its guest-physical address, taken as a virtual one: unmapped.
    let mut code = mov_imm64(0xb8, wasce_hypercall::APIC_GPA);
    code.extend_from_slice(&[0x48, 0x8b, 0x00]); // mov rax, [rax]
    expect_clean_fault(&mut f, &code, "read of the APIC page");
}

#[test]
fn page_tables_and_host_memory_are_unreachable() {
    let mut f = fixture();
    // The page-table pool's guest-physical addresses, taken as virtual ones: unmapped.
    for gva in [PT_POOL_GPA, PT_POOL_GPA + 0x1000, SYSTEM_SIZE - 8, 0] {
        let mut code = vec![0x48, 0xc7, 0x04, 0x25];
        code.extend_from_slice(&(gva as u32).to_le_bytes());
        code.extend_from_slice(&42u32.to_le_bytes()); // mov qword [gva], 42
        expect_clean_fault(&mut f, &code, &format!("write to {gva:#x}"));
    }
    // A host address that is not the guest's (this test's own stack).
    let local = 0u64;
    let mut code = mov_imm64(0xb8, &local as *const u64 as u64);
    code.extend_from_slice(&[0x48, 0x8b, 0x00]); // mov rax, [rax]
    expect_clean_fault(&mut f, &code, "read of host stack memory");
    // Beyond the end of linear memory (the guard region of the reservation).
    let mut code = mov_imm64(0xb8, f.memory_base + 65536);
    code.extend_from_slice(&[0x48, 0x8b, 0x00]);
    expect_clean_fault(&mut f, &code, "read past linear memory");
}

#[test]
fn jumps_to_non_code_fault_cleanly() {
    let mut f = fixture();
    let (vmctx, mem) = (f.vmctx, f.memory_base);
    expect_clean_fault(&mut f, &jump_to(0), "jump to 0");
    expect_clean_fault(&mut f, &jump_to(vmctx), "jump into the vmctx (data)");
    expect_clean_fault(&mut f, &jump_to(mem), "jump into linear memory");
    expect_clean_fault(&mut f, &jump_to(0x4000_0000_0000), "jump to an unmapped address");
    expect_clean_fault(&mut f, &jump_to(0xffff_8000_0000_0000), "jump to the upper half");
}

#[test]
fn garbage_hypercall_arguments_are_refused() {
    for transport in [HostcallTransport::Ring, HostcallTransport::Exit] {
        garbage_hypercall_arguments(fixture_with(transport));
    }
}

fn garbage_hypercall_arguments(mut f: Fixture) {
    let vmctx = f.vmctx;
    let mut code = Vec::new();
    // 0: memory.grow from a forged vmctx.
    code.extend(mov_imm64(0xbf, 0xdead_beef)); // rdi
    code.extend(hypercall(0));
    code.extend(store_rax(0));
    // 1: memory.fill of a memory index that does not exist.
    code.extend(mov_imm64(0xbf, vmctx));
    code.extend(mov_imm64(0xbe, 77)); // rsi = memory index
    code.extend(hypercall(1));
    code.extend(store_rax(1));
    // 2: memory.fill of memory 0 with a huge length (the byte, in rcx, is the values address:
    // rcx must keep pointing at the values array).
    code.extend(mov_imm64(0xbe, 0)); // rsi = memory 0
    code.extend(mov_imm64(0xba, 0)); // rdx = dst
    code.extend([0x49, 0xb8]); // mov r8, imm64 (len)
    code.extend(u64::MAX.to_le_bytes());
    code.extend(hypercall(1));
    code.extend(store_rax(2));
    // 3: host call of a function id that does not exist, with a wild values pointer.
    code.extend(mov_imm64(0xbe, 12345));
    code.extend(mov_imm64(0xba, 0x10));
    code.extend(hypercall(10));
    code.extend(store_rax(3));
    // 4: table.grow of a table that does not exist.
    code.extend(mov_imm64(0xbe, 3));
    code.extend(hypercall(5));
    code.extend(store_rax(4));
    code.push(0xc3); // ret: back to the entry stub, which makes the DONE hypercall
    let (r, values) = f.run(&code);
    r.expect("the guest gets error results, not a crash");
    let word = |i: usize| (values[i / 2] >> (64 * (i % 2))) as u64;
    assert_eq!(word(0), u64::MAX, "memory.grow from a forged vmctx");
    assert_eq!(word(1), 1, "memory.fill of a missing memory");
    assert_eq!(word(2), 1, "memory.fill with a huge length");
    assert_eq!(word(3), 1, "host call of a missing function");
    assert_eq!(word(4), u64::MAX, "table.grow of a missing table");
    f.still_works();
}

#[test]
fn unknown_hypercalls_and_stores_to_the_hypercall_page_stop_the_guest() {
    let mut f = fixture();
    expect_clean_fault(&mut f, &hypercall(40), "unknown hypercall number");
    let mut code = mov_imm64(0xb8, hcall_address(HCALL_DONE)); // mov rax, addr
    code.extend_from_slice(&[0x48, 0x89, 0x00]); // mov [rax], rax
    expect_clean_fault(&mut f, &code, "store to the hypercall page");
    let mut code = mov_imm64(0xb8, hcall_address(0) + 4); // unaligned hypercall address
    code.extend_from_slice(&[0x48, 0x8b, 0x00]);
    expect_clean_fault(&mut f, &code, "misaligned hypercall load");
}

/// The exit-free clocks and `random_get` rely on these: RDTSC at CPL3 reads the host's TSC
/// (no offset on this hypervisor) and RDRAND works at CPL3.
#[test]
fn guest_reads_the_host_tsc_and_rdrand() {
    let mut f = fixture();
    let mut code = vec![0x0f, 0x31]; // rdtsc
    code.extend([0x48, 0xc1, 0xe2, 0x20]); // shl rdx, 32
    code.extend([0x48, 0x09, 0xd0]); // or rax, rdx
    code.extend(store_rax(0));
    code.extend([0x48, 0x0f, 0xc7, 0xf0]); // rdrand rax
    code.extend(store_rax(1));
    code.push(0xc3);
    // SAFETY: RDTSC has no preconditions.
    let before = unsafe { core::arch::x86_64::_rdtsc() };
    let (r, values) = f.run(&code);
    // SAFETY: as above.
    let after = unsafe { core::arch::x86_64::_rdtsc() };
    r.unwrap();
    let word = |i: usize| (values[i / 2] >> (64 * (i % 2))) as u64;
    assert!(before <= word(0) && word(0) <= after, "guest TSC {} outside host [{before}, {after}]", word(0));
    assert_ne!(word(1), 0);
}

/// A guest that scribbles over the host-call ring: claims requests itself, leaves the slot
/// "taken" and faults, submits garbage. The host neither hangs nor crashes, garbage requests get
/// error results, and the store keeps working.
#[test]
fn scribbling_over_the_ring_is_contained() {
    use wasce_hypercall::*;
    let mut f = fixture_with(HostcallTransport::Ring);
    let ring = |field: u64| mov_imm64(0xb8, RING_GVA + field); // mov rax, ring+field
    let store32 = |v: u32| {
        let mut c = vec![0xc7, 0x00]; // mov dword [rax], imm32
        c.extend(v.to_le_bytes());
        c
    };
    // 1. Mark the slot TAKEN (as if the server held it) and fault: the host must not wait for a
    //    server that is not busy.
    let mut code = ring(RING_STATE);
    code.extend(store32(RING_TAKEN));
    code.extend([0x0f, 0x0b]); // ud2
    expect_clean_fault(&mut f, &code, "ring left TAKEN, then a fault");
    // 2. Submit garbage requests and spin on them, then return normally.
    let mut code = Vec::new();
    for field in [RING_FUNC, RING_VALUES, RING_CALLER] {
        code.extend(ring(field));
        code.extend([0x48, 0xc7, 0x00, 0xef, 0xbe, 0xad, 0xde]); // mov qword [rax], 0xdeadbeef
    }
    code.extend(ring(RING_STATE));
    code.extend(store32(RING_SUBMITTED));
    // Spin until the state changes (served) or ~1M iterations pass.
    code.extend([0xb9, 0x40, 0x42, 0x0f, 0x00]); // mov ecx, 1000000
    code.extend([0x83, 0x38, 0x01]); // cmp dword [rax], 1
    code.extend([0x75, 0x04]); // jne +4
    code.extend([0xf3, 0x90]); // pause
    code.extend([0xe2, 0xf7]); // loop back to cmp
    code.push(0xc3);
    let (r, _) = f.run(&code);
    r.expect("garbage ring requests are answered, not fatal");
    // 3. Ordinary calls still work, including ones that use the ring.
    f.still_works();
}

/// The fault machinery of standard KVM (IDT, GDT, TSS, the ring-0 handlers and their stack) is
/// mapped supervisor-only, and not at all on kvm_pvm: ring-3 code can neither read, write nor
/// run it, on any flavour.
#[test]
fn fault_machinery_is_unreachable_from_ring3() {
    use wasce_hypercall::*;
    let mut f = fixture();
    for (gva, what) in [(IDT_GVA, "IDT"), (GDT_GVA, "GDT"), (TSS_GVA, "TSS"), (FAULT_GVA, "fault handlers"), (FAULT_STACK_GVA, "fault stack")] {
        let mut read = mov_imm64(0xb8, gva);
        read.extend_from_slice(&[0x48, 0x8b, 0x00]); // mov rax, [rax]
        expect_clean_fault(&mut f, &read, &format!("read of the {what}"));
        let mut write = mov_imm64(0xb8, gva);
        write.extend_from_slice(&[0x48, 0x89, 0x00]); // mov [rax], rax
        expect_clean_fault(&mut f, &write, &format!("write to the {what}"));
        expect_clean_fault(&mut f, &jump_to(gva), &format!("jump into the {what}"));
    }
}

/// Ring-3 code cannot describe its own fault: the fault hypercall is honoured only from the
/// ring-0 handlers (CPL0, on the fault stack); made directly it is a bad access.
#[test]
fn forged_fault_reports_are_refused() {
    for transport in [HostcallTransport::Ring, HostcallTransport::Exit] {
        let mut f = fixture_with(transport);
        // Registers set up to look like a plausible report: rsp at the frame, a frame below.
        let mut code = mov_imm64(0xbc, wasce_hypercall::FAULT_STACK_GVA + 4096 - 56); // mov rsp, frame
        code.extend(hypercall(wasce_hypercall::HCALL_FAULT));
        let (r, _) = f.run(&code);
        match r {
            Err(Error::Resource(msg)) => assert!(msg.contains("unbacked"), "{msg}"),
            other => panic!("a forged fault report must be a bad access, got {other:?}"),
        }
        f.still_works();
    }
}

/// Software interrupts and system-call instructions at ring 3 (gates are DPL 0, EFER.SCE is
/// clear) end as contained faults, and the same VM keeps working after each.
#[test]
fn software_interrupts_and_syscalls_fault_cleanly() {
    let mut f = fixture_with(HostcallTransport::Exit);
    expect_clean_fault(&mut f, &[0xcc], "int3");
    expect_clean_fault(&mut f, &[0xcd, 0x80], "int 0x80");
    expect_clean_fault(&mut f, &[0xcd, 0x08], "int 8 (the double-fault gate)");
    expect_clean_fault(&mut f, &[0xcd, 0x0e], "int 14 (the page-fault gate)");
    expect_clean_fault(&mut f, &[0x0f, 0x05], "syscall");
    expect_clean_fault(&mut f, &[0x0f, 0x34], "sysenter");
    expect_clean_fault(&mut f, &[0x0f, 0x01, 0xd9], "vmmcall");
    expect_clean_fault(&mut f, &[0x0f, 0x01, 0xc1], "vmcall");
    // lidt [0]: privileged.
    expect_clean_fault(&mut f, &[0x0f, 0x01, 0x1c, 0x25, 0, 0, 0, 0], "lidt");
    // Stack pointer into unmapped memory, then a fault: delivery does not depend on the
    // guest's stack (the handlers run on their own).
    let mut code = mov_imm64(0xbc, 0x10); // mov rsp, 0x10
    code.extend_from_slice(&[0x0f, 0x0b]); // ud2
    expect_clean_fault(&mut f, &code, "ud2 with a wild stack pointer");
}
/// `Vm::unmap` (what a failed instantiation uses before freeing host memory): a page the guest
/// has just read (so its translation may be cached) faults once unmapped, the store keeps
/// working, and the same host page mapped again is reached through fresh guest-physical memory.
#[test]
fn unmapped_host_memory_is_out_of_the_guests_reach() {
    for transport in [HostcallTransport::Ring, HostcallTransport::Exit] {
        let mut f = fixture_with(transport);
        let page = crate::os::map_anonymous(4096, libc::PROT_READ | libc::PROT_WRITE).unwrap();
        // SAFETY: a fresh read-write page; it is leaked (the VM may map it until it drops).
        unsafe { (page as *mut u64).write(0x1234_5678) };
        let mut read = mov_imm64(0xb8, page as u64); // mov rax, page
        read.extend_from_slice(&[0x48, 0x8b, 0x00]); // mov rax, [rax]
        read.extend(store_rax(0));
        read.push(0xc3);
        f.store.request_map(page as u64, 4096, 4096, Perm::ReadWrite);
        f.store.flush_maps().unwrap();
        let (r, values) = f.run(&read);
        r.unwrap();
        assert_eq!(values[0] as u64, 0x1234_5678, "{transport:?}: mapped");
        assert!(f.store.unmap_host_range(page as u64));
        assert!(!f.store.vm.as_ref().unwrap().is_mapped(page as u64));
        expect_clean_fault(&mut f, &read, "read of an unmapped page");
        f.store.request_map(page as u64, 4096, 4096, Perm::ReadWrite);
        f.store.flush_maps().unwrap();
        let (r, values) = f.run(&read);
        r.unwrap();
        assert_eq!(values[0] as u64, 0x1234_5678, "{transport:?}: mapped again");
        f.still_works();
    }
}

/// The exception state is guest data: ExnAlloc refuses bad sizes, and a forged pending
/// exception (a wild pointer, wild next/end) is reported as an uncaught exception of the next
/// call without the host reading through it; the store keeps working and can still throw.
#[test]
fn forged_exception_state_is_never_trusted() {
    let mut f = fixture_with(HostcallTransport::Exit);
    let (vmctx, state) = (f.vmctx, f.store.exn_state as u64);
    let exn_alloc = wasce_compiler::builtins::Builtin::ExnAlloc as u64;
    let mut code = Vec::new();
    for (slot, size) in [0u64, 7, u64::MAX, 1 << 40].into_iter().enumerate() {
        code.extend(mov_imm64(0xbf, vmctx)); // rdi
        code.extend(mov_imm64(0xbe, size)); // rsi
        code.extend(hypercall(exn_alloc));
        code.extend(store_rax(slot as u8));
    }
    code.extend(mov_imm64(0xb8, state)); // mov rax, state
    code.extend(mov_imm64(0xba, 0xdead_beef_0000)); // mov rdx, wild
    code.extend([0x48, 0x89, 0x10]); // mov [rax], rdx  (pending)
    code.extend([0x48, 0x89, 0x50, 0x08]); // mov [rax+8], rdx  (next)
    code.extend([0x48, 0x89, 0x50, 0x10]); // mov [rax+16], rdx (end)
    code.push(0xc3);
    let (r, values) = f.run(&code);
    r.expect("the guest gets error results, not a crash");
    let word = |i: usize| (values[i / 2] >> (64 * (i % 2))) as u64;
    for i in 0..4 {
        assert_eq!(word(i), 0, "ExnAlloc of a bad size ({i})");
    }
    match f.store.call(f.ok, &[]) {
        Err(Error::Exception) => {}
        other => panic!("expected the forged exception to be reported, got {other:?}"),
    }
    f.still_works();
    // next == end (both wild, equal): a throw asks the host for a new chunk and is caught.
    let module = crate::load(
        &wat::parse_str(
            r#"(module (tag $e (param i32))
                 (func (export "f") (result i32)
                   (block $h (result i32) (try_table (catch $e $h) (throw $e (i32.const 5))) (unreachable))))"#,
        )
        .unwrap(),
        &Settings::default(),
    )
    .unwrap();
    let instance = Linker::new().instantiate(&mut f.store, &module).unwrap();
    let Some(Extern::Func(func)) = f.store.export(instance, "f") else { panic!() };
    assert_eq!(f.store.call(func, &[]).unwrap(), vec![Val::I32(5)]);
}

#[test]
fn code_the_guest_runs_cannot_be_written() {
    let mut f = fixture();
    let module = f.store.instances[0].module.clone();
    let (code, copy) = (module.code_base(), module.compiled.code.guest_pages().unwrap());
    let before = module.compiled.code.bytes().to_vec();
    for (gva, what) in [(code, "write to the module's code"), (copy, "write to the host address of the VM's code pages")] {
        let mut code = mov_imm64(0xb8, gva);
        code.extend_from_slice(&[0x48, 0xc7, 0x00, 0xcc, 0xcc, 0xcc, 0xcc]); // mov qword [rax], 0xcccccccc
        expect_clean_fault(&mut f, &code, what);
    }
    assert_eq!(module.compiled.code.bytes(), &before[..], "the code is unchanged");
    // SAFETY: the copy holds `len` bytes of code for as long as the module lives.
    let copy = unsafe { std::slice::from_raw_parts(copy as *const u8, before.len()) };
    assert_eq!(copy, &before[..], "the pages the VM maps are unchanged");
}
