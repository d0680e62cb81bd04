//! What each KVM flavour needs: the one place that states every difference between the
//! hypervisors wasce runs on, and the code that chooses per host.
//!
//! | | kvm_pvm (software, page-table based) | kvm_intel (VMX), kvm_amd (SVM) |
//! |---|---|---|
//! | fault delivery | no IDT: a fault triple-faults into `KVM_EXIT_SHUTDOWN` with RIP, CR2 and the vector intact and the vCPU reusable (PVM delivers events through its own entry point, never an IDT; its ring 0 is emulated and slow) | a triple fault resets the vCPU (SVM: RIP 0xfff0, CR2 0; every later call fails), so faults go through a ring-0 IDT whose handlers report vector, RIP, CR2 and error code with one hypercall (`wasce_vmguest::fault`); the vCPU's segments are restored before the next call |
//! | guest TSC | the host's, unchanged | offset by KVM (it starts near 0): the offset is set to 0 (`KVM_VCPU_TSC_OFFSET`, else the TSC MSR is written), so the exit-free clocks can use the host's calibration |
//! | XSAVE state | the guest runs with the host's XCR0 | CR4.OSXSAVE and XCR0 (the host's, within what KVM supports) are set, else Cranelift's AVX code would #UD |
//! | ring-3 `in`/`out` | #GP (PVM forces IOPL 0) | #GP because wasce sets IOPL 0 (with IOPL 3 they would exit as `KVM_EXIT_IO`) |
//! | hypercalls | MMIO loads (25-110 µs an exit) | the same MMIO loads (an exit costs about a microsecond on bare metal) |
//! | ring server polling after the last request (`ring_idle`) | 100 µs: exits are dear, polling saves them | 5 µs: an exit costs less than polling longer |
//! | CPUID | `KVM_GET_SUPPORTED_CPUID` under-reports; ring-3 `cpuid` shows the host's | `KVM_GET_SUPPORTED_CPUID` as is: what KVM virtualises |
//!
//! Everything else (CPL3 only, page tables the guest cannot reach, no syscalls, an in-kernel
//! local APIC that nothing uses where the kernel grants one: `Vm::new`) is the same on every
//! flavour. The flavour is detected from the loaded KVM module (`/sys/module`), once.

use std::path::Path;

/// The KVM implementation behind `/dev/kvm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `kvm_pvm`: the page-table-based software hypervisor (nested clouds).
    Pvm,
    /// `kvm_intel`: hardware virtualization with VMX.
    Vmx,
    /// `kvm_amd`: hardware virtualization with SVM.
    Svm,
}

/// How a guest fault reaches the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultDelivery {
    /// No IDT: the fault triple-faults and KVM reports a shutdown with the state intact.
    TripleFault,
    /// A ring-0 IDT whose handlers make `HCALL_FAULT`.
    Idt,
}

impl Flavour {
    /// The flavour of this host's KVM (detected once). A host with none of the three modules
    /// visible (KVM built in, no sysfs) is taken for standard KVM: the IDT path works on any
    /// hardware-virtualization KVM, only kvm_pvm needs the triple-fault path.
    pub fn host() -> Flavour {
        static FLAVOUR: std::sync::OnceLock<Flavour> = std::sync::OnceLock::new();
        *FLAVOUR.get_or_init(|| {
            let loaded = |m: &str| Path::new("/sys/module").join(m).exists();
            if loaded("kvm_pvm") {
                Flavour::Pvm
            } else if loaded("kvm_amd") {
                Flavour::Svm
            } else if loaded("kvm_intel") {
                Flavour::Vmx
            } else if is_amd() {
                Flavour::Svm
            } else {
                Flavour::Vmx
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Pvm => "kvm_pvm",
            Flavour::Vmx => "kvm_intel",
            Flavour::Svm => "kvm_amd",
        }
    }

    pub fn fault_delivery(self) -> FaultDelivery {
        match self {
            Flavour::Pvm => FaultDelivery::TripleFault,
            Flavour::Vmx | Flavour::Svm => FaultDelivery::Idt,
        }
    }

    /// Whether the guest TSC must be aligned with the host's (KVM offsets it).
    pub fn aligns_tsc(self) -> bool {
        self != Flavour::Pvm
    }

    /// How long the ring server polls without a request before it sleeps: about what the exit
    /// it saves the next request costs (then a guest's spin-then-exit never burns more than twice
    /// what the cheaper choice would have).
    pub fn ring_idle(self) -> std::time::Duration {
        match self {
            Flavour::Pvm => std::time::Duration::from_micros(100),
            Flavour::Vmx | Flavour::Svm => std::time::Duration::from_micros(5),
        }
    }

    /// The largest new linear memory under 2 MiB (4 KiB pages throughout, no huge page backs
    /// it) that the host fills in before the guest runs (`LinearMemory::populate_small`). On
    /// kvm_pvm (a shadow MMU, nested) the guest's first touch of a 4 KiB page is a fault of
    /// 20-60 µs, two where it reads the page before writing it, while the host fills a page in
    /// about a µs and KVM maps eight present host pages per guest fault. With EPT/NPT a first
    /// touch costs a few µs: not measured here, so nothing is filled in ahead.
    pub fn prepopulate_max(self) -> u64 {
        match self {
            Flavour::Pvm => 1 << 20,
            Flavour::Vmx | Flavour::Svm => 0,
        }
    }

    /// Whether the host must enable XSAVE (CR4.OSXSAVE, XCR0) for the guest.
    pub fn sets_xcr0(self) -> bool {
        self != Flavour::Pvm
    }
}

fn is_amd() -> bool {
    let r = std::arch::x86_64::__cpuid(0);
    (r.ebx, r.edx, r.ecx) == (u32::from_le_bytes(*b"Auth"), u32::from_le_bytes(*b"enti"), u32::from_le_bytes(*b"cAMD"))
}
