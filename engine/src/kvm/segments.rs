//! GDT, TSS, IDT and the special registers that start the vCPU directly in 64-bit mode at CPL3.
//! Guest code only ever runs at CPL3. How faults leave the guest depends on the flavour
//! (`flavour`): on kvm_pvm there is no IDT, so any exception becomes a triple fault, which leaves
//! the VM as `KVM_EXIT_SHUTDOWN` with RIP, CR2 and the vector intact; on standard KVM the IDT
//! sends exceptions to the ring-0 handlers of `wasce_vmguest::fault`, which report them.

use super::flavour::{FaultDelivery, Flavour};
use kvm_bindings::{kvm_segment, kvm_sregs};
use wasce_hypercall::{FAULT_GPA, FAULT_STACK_GVA, GDT_GVA, GDT_GPA, IDT_GPA, IDT_GVA, PAGE_SIZE, TSS_GPA, TSS_GVA, TSS_LIMIT};

const GDT_USER_CODE: u16 = 3;
const GDT_USER_DATA: u16 = 4;
const GDT_TSS: u16 = 5;
const GDT_ENTRIES: usize = 7;
pub const USER_CS: u16 = (GDT_USER_CODE << 3) | 3; // 0x1b
pub const USER_SS: u16 = (GDT_USER_DATA << 3) | 3; // 0x23

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_OSXSAVE: u64 = 1 << 18;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

/// RFLAGS at entry: reserved bit 1, IOPL 0 (ring-3 `in`/`out` fault instead of exiting),
/// interrupts off.
pub const RFLAGS: u64 = 0x2;

fn code64(selector: u16, dpl: u8) -> kvm_segment {
    kvm_segment { base: 0, limit: 0xffff_ffff, selector, type_: 0xb, present: 1, dpl, db: 0, s: 1, l: 1, g: 1, ..Default::default() }
}

fn data(selector: u16, dpl: u8) -> kvm_segment {
    kvm_segment { base: 0, limit: 0xffff_ffff, selector, type_: 0x3, present: 1, dpl, db: 1, s: 1, l: 0, g: 1, ..Default::default() }
}

fn tss() -> kvm_segment {
    kvm_segment { base: TSS_GVA, limit: TSS_LIMIT as u32, selector: GDT_TSS << 3, type_: 0xb, present: 1, dpl: 0, s: 0, ..Default::default() }
}

/// The in-memory descriptor for a segment, so the GDT and KVM's cached state agree.
fn encode(seg: &kvm_segment) -> u64 {
    let limit = if seg.g != 0 { seg.limit >> 12 } else { seg.limit } as u64;
    let base = seg.base;
    (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | ((seg.type_ as u64 & 0xf) << 40)
        | ((seg.s as u64) << 44)
        | ((seg.dpl as u64 & 3) << 45)
        | ((seg.present as u64) << 47)
        | (((limit >> 16) & 0xf) << 48)
        | ((seg.l as u64) << 53)
        | ((seg.db as u64) << 54)
        | ((seg.g as u64) << 55)
        | (((base >> 24) & 0xff) << 56)
}

/// Write the GDT and the TSS (I/O bitmap all-deny; RSP0 the fault stack) into slot 0, and for
/// IDT fault delivery the IDT and the handlers.
///
/// # Safety
/// `system` must be the host address of slot 0.
pub unsafe fn write_tables(system: *mut u8, flavour: Flavour) {
    let mut gdt = [0u64; GDT_ENTRIES];
    gdt[1] = encode(&code64(1 << 3, 0));
    gdt[2] = encode(&data(2 << 3, 0));
    gdt[GDT_USER_CODE as usize] = encode(&code64(USER_CS, 3));
    gdt[GDT_USER_DATA as usize] = encode(&data(USER_SS, 3));
    let t = tss();
    gdt[GDT_TSS as usize] = encode(&t);
    gdt[GDT_TSS as usize + 1] = t.base >> 32;
    // SAFETY: GDT_GPA and the TSS lie inside slot 0 (compile-time asserted in wasce-hypercall).
    unsafe {
        std::ptr::copy_nonoverlapping(gdt.as_ptr() as *const u8, system.add(GDT_GPA as usize), GDT_ENTRIES * 8);
        let tss = std::slice::from_raw_parts_mut(system.add(TSS_GPA as usize), TSS_LIMIT as usize + 1);
        tss.fill(0xff);
        tss[..104].fill(0);
        tss[102..104].copy_from_slice(&104u16.to_le_bytes());
        if flavour.fault_delivery() == FaultDelivery::Idt {
            // RSP0: the CPU switches to the top of the fault stack when a fault leaves CPL3.
            tss[4..12].copy_from_slice(&(FAULT_STACK_GVA + PAGE_SIZE).to_le_bytes());
            std::ptr::copy_nonoverlapping(wasce_vmguest::fault::IDT.as_ptr(), system.add(IDT_GPA as usize), PAGE_SIZE as usize);
            std::ptr::copy_nonoverlapping(wasce_vmguest::fault::HANDLERS.as_ptr(), system.add(FAULT_GPA as usize), PAGE_SIZE as usize);
        }
    }
}

/// Special registers for long mode at CPL3 with paging rooted at `cr3`; `base` keeps what KVM
/// set up (APIC base and such). The IDT is loaded for IDT fault delivery; XSAVE is enabled
/// where the host sets XCR0 for the guest.
pub fn user_sregs(base: &kvm_sregs, cr3: u64, flavour: Flavour) -> kvm_sregs {
    let mut s = *base;
    s.cs = code64(USER_CS, 3);
    let ds = data(USER_SS, 3);
    s.ss = ds;
    s.ds = ds;
    s.es = ds;
    s.fs = ds;
    s.gs = ds;
    s.tr = tss();
    s.ldt = kvm_segment { selector: 0, type_: 0x2, present: 1, unusable: 1, ..Default::default() };
    s.gdt.base = GDT_GVA;
    s.gdt.limit = (GDT_ENTRIES * 8 - 1) as u16;
    (s.idt.base, s.idt.limit) = match flavour.fault_delivery() {
        FaultDelivery::TripleFault => (0, 0),
        FaultDelivery::Idt => (IDT_GVA, wasce_vmguest::fault::IDT_LIMIT),
    };
    s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    s.cr3 = cr3;
    s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | if flavour.sets_xcr0() { CR4_OSXSAVE } else { 0 };
    s.efer = EFER_LME | EFER_LMA | EFER_NXE;
    s.cr2 = 0;
    s.cr8 = 0;
    s
}
