//! The KVM backend: one VM with one vCPU per store. Compiled code runs at CPL3 with no guest
//! OS; the host builds the page tables, maps host memory that compiled code needs at the same
//! guest-virtual address, and serves hypercalls (see `wasce-hypercall` for the ABI).
//!
//! * `flavour`: what each hypervisor (kvm_pvm, kvm_intel, kvm_amd) needs, in one place.
//! * `segments`: GDT/TSS/IDT and the long-mode CPL3 register state.
//! * `paging`: the host-built page tables.
//! * `kick`: timeouts via a signal and `immediate_exit`.
//!
//! What the guest can reach: its code images (read-execute), the store arena as far as blocks
//! have been handed out (vmctx, tables, globals), linear memories up to their current size, its
//! stack, the runtime page and the hypercall page. Nothing else of the host is mapped, and a
//! region is unmapped (`Vm::unmap`) before the host frees it.

mod flavour;
mod kick;
mod paging;
mod ring;
mod segments;

pub use flavour::{FaultDelivery, Flavour};
pub use kick::{signal as kick_signal, Job, Kicker, Watchdog};
pub use ring::{RingHandler, RingServer};
pub use paging::{PageSize, Perm, HUGE_PAGE};

use crate::error::Error;
use kvm_bindings::{kvm_regs, kvm_sregs, kvm_userspace_memory_region, kvm_vcpu_events, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm, SyncReg, VcpuExit, VcpuFd, VmFd};
use paging::PageTables;
use std::collections::HashMap;
use wasce_hypercall::*;

/// Bytes between the stack limit given to compiled code and the end of the stack mapping, for
/// trampolines (which do not check the limit).
pub const STACK_RED_ZONE: u64 = 64 * 1024;
/// Unmapped guard below the guest stack.
const STACK_GUARD: u64 = 64 * 1024;

/// Why a guest call did not return normally.
#[derive(Debug)]
pub enum GuestStop {
    /// An exception: `vector` at `rip` (CR2 for a page fault), reported by the triple fault
    /// (kvm_pvm) or the ring-0 handlers (standard KVM).
    Fault { rip: u64, vector: u8, cr2: u64, rbp: u64 },
    /// KVM_RUN was interrupted (a timeout kick); where the guest was.
    Interrupted { rip: u64, rbp: u64 },
    /// The guest touched guest-physical memory with no memslot, or made an unknown hypercall.
    BadAccess { rip: u64, gpa: u64 },
    /// Any other exit, described.
    Other(String),
}

/// A host range the VM must map (recorded while the VM is busy running the guest).
#[derive(Clone, Copy, Debug)]
pub struct MapRequest {
    /// The region's address in the host, and so in the guest.
    pub host: u64,
    /// Where the pages the guest sees lie in this process: `host` itself, except for code,
    /// whose VM pages are a writable copy (`CodeMemory::guest_pages`).
    pub backing: u64,
    pub reserve: u64,
    pub len: u64,
    pub perm: Perm,
    pub size: PageSize,
}

/// A region of host memory mapped into the guest 1:1 (guest-virtual = host address).
struct Mapping {
    gpa: u64,
    /// Host address of the pages behind it (`MapRequest::backing`).
    backing: u64,
    /// Guest-physical space reserved for this region.
    reserved: u64,
    /// Bytes covered by memslots.
    slotted: u64,
    /// Bytes with present PTEs.
    mapped: u64,
    perm: Perm,
    size: PageSize,
    /// The memslots covering `[gpa, gpa + slotted)`, in order: (slot, offset in the region).
    slots: Vec<(u32, u64)>,
}

/// An anonymous mapping owned by the VM, unmapped on drop.
struct HostRegion {
    ptr: *mut u8,
    len: u64,
}

impl Drop for HostRegion {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping this region owns.
        unsafe { libc::munmap(self.ptr as *mut _, self.len as usize) };
    }
}

/// What must be re-established in the vCPU before it runs guest code again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reset {
    Nothing,
    /// A fault ran the ring-0 handler: restore the CPL3 segments (through the sync registers).
    Segments,
    /// KVM reset the vCPU (a triple fault on standard KVM) or it stopped in an unknown state:
    /// everything the host set up (special registers, XCR0, TSC).
    Everything,
}

pub struct Vm {
    // Drop order: vCPU, then VM, then the memory the memslots point at (regions last).
    vcpu: VcpuFd,
    vm: VmFd,
    flavour: Flavour,
    /// The CPL3 special registers every call starts from.
    user_sregs: kvm_sregs,
    /// XCR0 for the guest, where the host sets it (`Flavour::sets_xcr0`).
    xcr0: Option<u64>,
    reset: Reset,
    /// `KVM_GET_TSC_KHZ` of the vCPU.
    tsc_khz: Option<u32>,
    /// Host address of slot 0.
    system: *mut u8,
    pt: PageTables,
    mappings: HashMap<u64, Mapping>,
    /// Guest-physical space is handed out upwards and never reused, so a translation left
    /// over from an unmapped region can only ever lead to memory with no memslot.
    next_gpa: u64,
    next_slot: u32,
    /// Memslot ids given back by `unmap`.
    free_slots: Vec<u32>,
    /// The last exit left an MMIO load for KVM to complete on the next KVM_RUN.
    io_pending: bool,
    stack: *mut u8,
    stack_size: u64,
    /// The exit-less host-call ring, when this VM uses it (dropped before the memory below).
    ring: Option<RingServer>,
    /// The watchdog thread, when calls have a timeout.
    kicker: Option<Kicker>,
    /// The vCPU's FPU/SIMD state as created, put back by `scrub` (None if KVM would not
    /// report it in the legacy 4 KiB XSAVE layout; then `KVM_SET_FPU` zeroes the legacy part).
    pristine_fpu: Option<Box<kvm_bindings::kvm_xsave>>,
    _regions: [HostRegion; 2],
}

// SAFETY: the VM's fds and mappings are owned by this object; it is used by one thread at a time.
unsafe impl Send for Vm {}

impl Drop for Vm {
    /// Before the fields drop in their order (the vCPU, the VM, then the threads are joined and
    /// the memory unmapped), the helper threads are told to end: each takes a while to be
    /// scheduled (half a millisecond on kvm_pvm), which then overlaps closing the VM instead of
    /// following it.
    fn drop(&mut self) {
        if let Some(ring) = &self.ring {
            ring.stop();
        }
        if let Some(kicker) = &self.kicker {
            kicker.stop();
        }
    }
}

/// Run a setup ioctl again while it fails with EINTR. KVM_CREATE_VM registers an MMU notifier,
/// which gives up with EINTR whenever a signal is pending, even one whose handler has
/// SA_RESTART (an embedder's timer or profiler signal was enough to fail a store). Bounded, so
/// a thread under a constant signal storm gets the error instead of a hang.
fn retry_interrupted<T>(mut ioctl: impl FnMut() -> Result<T, kvm_ioctls::Error>) -> Result<T, kvm_ioctls::Error> {
    let mut attempts = 0;
    loop {
        match ioctl() {
            Err(e) if e.errno() == libc::EINTR && attempts < 1_000 => attempts += 1,
            result => return result,
        }
    }
}

/// XCR0 for the guest on standard KVM: the host's own, within what KVM supports (CPUID leaf
/// 0xD). The state compiled code may use (x87, SSE, AVX, AVX-512: the host's code generator
/// targets the host) must be among it, or that code would fault in the VM: an error, named.
fn guest_xcr0(cpuid: &kvm_bindings::CpuId) -> Result<u64, Error> {
    // SAFETY: xgetbv(0) is valid whenever the OS enabled XSAVE, which every x86-64 Linux with
    // AVX does; without OSXSAVE the host uses only x87/SSE state.
    let host = if std::arch::is_x86_feature_detected!("xsave") { unsafe { std::arch::x86_64::_xgetbv(0) } } else { 0x3 };
    let supported = cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == 0xd && e.index == 0)
        .map_or(0x3, |e| e.eax as u64 | (e.edx as u64) << 32);
    const CODE_STATE: u64 = 0b1110_0111; // x87, SSE, AVX, AVX-512 opmask/ZMM_Hi256/Hi16_ZMM
    let xcr0 = host & supported;
    if host & CODE_STATE & !supported != 0 {
        return Err(Error::Resource(format!(
            "KVM cannot enable the processor state this host uses (XCR0 {host:#x}, KVM supports {supported:#x}); compiled code would fault in the VM"
        )));
    }
    Ok(xcr0)
}

fn kvm_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Resource(format!("{what}: {e}"))
}

fn mmap_anon(len: u64, prot: libc::c_int) -> Result<*mut u8, Error> {
    crate::os::map_anonymous(len as usize, prot).map_err(|e| Error::Resource(format!("mmap of {len} bytes failed: {e}")))
}

/// Reserve the runtime window in this process (once), so no host mapping can land on the guest
/// addresses of the runtime and hypercall pages.
fn reserve_runtime_window() -> Result<(), Error> {
    static RESERVED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    RESERVED
        .get_or_init(|| {
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; it fails instead.
            let p = unsafe {
                libc::mmap(
                    RESERVED_GVA as *mut _,
                    RESERVED_SIZE as usize,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p as u64 == RESERVED_GVA {
                Ok(())
            } else {
                Err(format!(
                    "cannot reserve the guest runtime window at {RESERVED_GVA:#x}: {}",
                    std::io::Error::last_os_error()
                ))
            }
        })
        .clone()
        .map_err(Error::Resource)
}

/// The KVM device an embedder opened for every VM of this process (`use_device`).
static DEVICE: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

/// Create every VM of this process through `device`, an open `/dev/kvm`, instead of opening the
/// node. For an embedder that loses sight of the node before it runs guests: a container shim
/// opens it on the host, then runs the module inside the container (another mount namespace,
/// a device cgroup that does not allow the node). Set once; a second call hands `device` back.
pub fn use_device(device: std::os::fd::OwnedFd) -> Result<(), std::os::fd::OwnedFd> {
    DEVICE.set(device)
}

/// The KVM system fd for a new VM: a duplicate of the `use_device` one, else the node
/// (`WASCE_KVM_DEVICE`, default `/dev/kvm`) opened.
fn open_kvm() -> Result<Kvm, Error> {
    if let Some(fd) = DEVICE.get() {
        let dup = fd.try_clone().map_err(|e| Error::Resource(format!("KVM is not available (the device fd the embedder gave: {e})")))?;
        // SAFETY: `dup` is a fresh fd this process owns; `Kvm` takes it over (and closes it).
        return Ok(unsafe { <Kvm as std::os::fd::FromRawFd>::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(dup)) });
    }
    // WASCE_KVM_DEVICE names another device node (tests use it to simulate a missing KVM).
    let device = std::env::var("WASCE_KVM_DEVICE").unwrap_or_else(|_| "/dev/kvm".to_string());
    let path = std::ffi::CString::new(device.clone()).map_err(|_| Error::Usage("WASCE_KVM_DEVICE contains a NUL byte".into()))?;
    Kvm::new_with_path(&path).map_err(|e| {
        Error::Resource(format!(
            "KVM is not available ({device}: {e}); run with `--isolation process` to run without a VM"
        ))
    })
}

/// What KVM can virtualise for this host (`KVM_GET_SUPPORTED_CPUID`), asked once per process:
/// the answer does not change while the module is loaded, and on a nested host asking costs
/// about 0.4 ms (the kernel runs `cpuid` for every leaf, each an exit to the outer hypervisor).
/// Only an answer is kept: after a failure (say ENOMEM) the next VM asks again.
static SUPPORTED_CPUID: std::sync::Mutex<Option<kvm_bindings::CpuId>> = std::sync::Mutex::new(None);

/// The answer, asked now unless another thread has; one asking now holds the lock, so this
/// waits for its answer rather than asking too.
fn supported_cpuid(kvm: &Kvm) -> Result<kvm_bindings::CpuId, Error> {
    let mut known = SUPPORTED_CPUID.lock().unwrap_or_else(|p| p.into_inner());
    if known.is_none() {
        *known = Some(kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(|e| kvm_err("KVM_GET_SUPPORTED_CPUID", e))?);
    }
    Ok(known.clone().expect("filled above"))
}

/// Ask KVM for the supported CPUID on a thread of its own, so that the question overlaps what
/// the caller does before it creates its first VM (`wasce exec`: loading the module); `Vm::new`
/// then finds the answer, or waits for it. `None` if it was asked already or no thread could
/// start (`Vm::new` asks then). Where KVM cannot be opened the thread does nothing, and
/// `Vm::new` reports that. Join the handle before the process confines itself (it checks that
/// no thread it does not know is left).
pub fn prefetch_cpuid() -> Option<std::thread::JoinHandle<()>> {
    if SUPPORTED_CPUID.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
        return None;
    }
    std::thread::Builder::new()
        .name("wasce-cpuid".into())
        .spawn(|| {
            if let Ok(kvm) = open_kvm() {
                let _ = supported_cpuid(&kvm);
            }
        })
        .ok()
}

impl Vm {
    /// Create the VM: slot 0 with GDT, TSS, runtime page and page tables; the stack; one vCPU at
    /// CPL3; the ring server if `use_ring`, the watchdog thread if `timeouts`. Fails with a
    /// clear message if KVM is not usable.
    pub fn new(stack_size: u64, use_ring: bool, timeouts: bool) -> Result<Vm, Error> {
        reserve_runtime_window()?;
        kick::install();
        let kvm = open_kvm()?;
        if !kvm.check_extension(Cap::SyncRegs) || !kvm.check_extension(Cap::ImmediateExit) {
            return Err(Error::Resource("KVM lacks KVM_CAP_SYNC_REGS or KVM_CAP_IMMEDIATE_EXIT".into()));
        }
        let flavour = Flavour::host();
        // The exit-free WASI routines go after the generated runtime page's code (a vmguest
        // test checks they fit; a build where they do not is refused, never truncated).
        let wasi = wasce_vmguest::wasi::routines();
        if wasi.len() > (PAGE_SIZE - RT_WASI) as usize {
            return Err(Error::Resource(format!("the guest's WASI routines ({} bytes) do not fit the runtime page", wasi.len())));
        }
        let vm = retry_interrupted(|| kvm.create_vm()).map_err(|e| kvm_err("KVM_CREATE_VM", e))?;
        // A local APIC in the kernel (the split irqchip: no PIC, no IOAPIC), which the guest never
        // reaches (no mapping of its page: `APIC_GPA` lies outside every guest-physical range we
        // use; no MSR access at CPL3; nothing injected). It saves two code patches
        // system-wide per VM: without it, KVM counts the vCPU in `kvm_has_noapic_vcpu`, a static
        // key that flips (a text patch on every CPU, 0.3 ms on the nested host) whenever the
        // count leaves or reaches 0: at the creation and the end of every VM when it is the
        // host's only APIC-less one, which is the usual case. The in-kernel APIC's own key is
        // rate-limited. Only a cost: where the kernel refuses, the VM works the same without.
        let split_irqchip = kvm_bindings::kvm_enable_cap { cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP, ..Default::default() };
        let _ = vm.enable_cap(&split_irqchip);
        let system = mmap_anon(SYSTEM_SIZE, libc::PROT_READ | libc::PROT_WRITE)?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: SYSTEM_GPA,
            memory_size: SYSTEM_SIZE,
            userspace_addr: system as u64,
        };
        // SAFETY: `system` is a live mapping of SYSTEM_SIZE bytes that outlives the VM fd.
        unsafe { vm.set_user_memory_region(region) }.map_err(|e| kvm_err("memslot 0", e))?;
        // SAFETY: slot 0 is ours, zeroed and SYSTEM_SIZE long; the routines fit (checked above).
        let pt = unsafe {
            segments::write_tables(system, flavour);
            std::ptr::copy_nonoverlapping(wasce_vmguest::RUNTIME_PAGE.as_ptr(), system.add(RUNTIME_GPA as usize), PAGE_SIZE as usize);
            std::ptr::copy_nonoverlapping(wasi.as_ptr(), system.add((RUNTIME_GPA + RT_WASI) as usize), wasi.len());
            PageTables::new(system)
        };
        let stack_size = stack_size.div_ceil(PAGE_SIZE) * PAGE_SIZE + STACK_RED_ZONE;
        let stack = mmap_anon(stack_size + STACK_GUARD, libc::PROT_READ | libc::PROT_WRITE)?;
        let vcpu = vm.create_vcpu(0).map_err(|e| kvm_err("KVM_CREATE_VCPU", e))?;
        let mut this = Vm {
            vcpu,
            vm,
            flavour,
            user_sregs: kvm_sregs::default(),
            xcr0: None,
            reset: Reset::Nothing,
            tsc_khz: None,
            system,
            pt,
            mappings: HashMap::new(),
            next_gpa: DYNAMIC_GPA,
            next_slot: 1,
            free_slots: Vec::new(),
            io_pending: false,
            stack,
            stack_size,
            ring: None,
            kicker: None,
            pristine_fpu: None,
            _regions: [HostRegion { ptr: system, len: SYSTEM_SIZE }, HostRegion { ptr: stack, len: stack_size + STACK_GUARD }],
        };
        // The runtime page (read-execute) and the hypercall page (no memslot behind it).
        this.pt_map(RUNTIME_GVA, RUNTIME_GPA, 1, Perm::ReadExecute)?;
        this.pt_map(HCALL_GVA, HCALL_GPA, 1, Perm::ReadWrite)?;
        if flavour.fault_delivery() == FaultDelivery::Idt {
            // The CPU reads the GDT, TSS and IDT and runs the handlers on their stack at CPL0;
            // none of it is reachable from CPL3.
            let tss_pages = (TSS_GPA + TSS_LIMIT + 1).div_ceil(PAGE_SIZE) - TSS_GPA / PAGE_SIZE;
            this.pt_map(GDT_GVA, GDT_GPA, 1, Perm::SupervisorRead)?;
            this.pt_map(TSS_GVA, TSS_GPA, tss_pages, Perm::SupervisorRead)?;
            this.pt_map(IDT_GVA, IDT_GPA, 1, Perm::SupervisorRead)?;
            this.pt_map(FAULT_GVA, FAULT_GPA, 1, Perm::SupervisorExecute)?;
            this.pt_map(FAULT_STACK_GVA, FAULT_STACK_GPA, 1, Perm::SupervisorReadWrite)?;
        }
        if use_ring {
            // SAFETY: the runtime page and the ring page are inside slot 0, which outlives the
            // server (the `ring` field drops before `_regions`).
            unsafe {
                let page = system.add(RUNTIME_GPA as usize);
                std::ptr::copy_nonoverlapping(page.add(RT_BUILTIN_TABLE as usize), page.add(RT_BUILTIN_TABLE_RING as usize), 8 * HCALL_MAX_BUILTIN as usize);
                let entry = wasce_vmguest::WASI_ROUTINES_GVA + wasce_vmguest::wasi::ring_hostcall_offset();
                (page.add((RT_BUILTIN_TABLE_RING + 8 * HCALL_HOST_CALL) as usize) as *mut u64).write(entry);
                this.ring = Some(RingServer::start(system.add(RING_GPA as usize), flavour.ring_idle()));
            }
            this.pt_map(RING_GVA, RING_GPA, 1, Perm::ReadWrite)?;
        }
        if timeouts {
            this.kicker = Some(Kicker::start().map_err(|e| Error::Resource(format!("cannot start the timeout thread: {e}")))?);
        }
        // The stack above its guard.
        // SAFETY: inside the stack mapping.
        let stack_lo = unsafe { stack.add(STACK_GUARD as usize) } as u64;
        this.map(MapRequest { host: stack_lo, backing: stack_lo, reserve: stack_size, len: stack_size, perm: Perm::ReadWrite, size: PageSize::Small })?;

        // CPUID: what KVM can virtualise for this host, as it reports it.
        let cpuid = supported_cpuid(&kvm)?;
        this.vcpu.set_cpuid2(&cpuid).map_err(|e| kvm_err("KVM_SET_CPUID2", e))?;
        if flavour.sets_xcr0() {
            this.xcr0 = Some(guest_xcr0(&cpuid)?);
        }
        // memory.fill and memory.copy run in the guest (bounds-checked vector moves), with
        // AVX2 where the CPU has it and the guest's XCR0 enables AVX (the host's, on PVM).
        let avx2 = crate::builtins::host_avx2() && this.xcr0.is_none_or(|x| x & 0b110 == 0b110);
        let (fill, copy) = wasce_vmguest::wasi::bulk_memory_routine_names(avx2);
        for table in [RT_BUILTIN_TABLE, RT_BUILTIN_TABLE_RING] {
            for (number, routine) in [(HCALL_MEMORY_FILL, fill), (HCALL_MEMORY_COPY, copy)] {
                let offset = wasce_vmguest::wasi::routine_offset(routine).expect("defined in vmguest");
                // SAFETY: both builtin tables lie in the runtime page, inside slot 0; the guest
                // has not run yet.
                unsafe {
                    let entries = system.add((RUNTIME_GPA + table) as usize) as *mut u64;
                    entries.add(number as usize).write(wasce_vmguest::WASI_ROUTINES_GVA + offset);
                }
            }
        }
        let base = this.vcpu.get_sregs().map_err(|e| kvm_err("KVM_GET_SREGS", e))?;
        this.user_sregs = segments::user_sregs(&base, this.pt.pml4, flavour);
        this.establish()?;
        this.tsc_khz = this.vcpu.get_tsc_khz().ok().filter(|k| *k > 0);
        this.pristine_fpu = this.vcpu.get_xsave().ok().map(Box::new);
        this.vcpu.set_sync_valid_reg(SyncReg::Register);
        this.vcpu.set_sync_valid_reg(SyncReg::SystemRegister);
        this.vcpu.set_sync_valid_reg(SyncReg::VcpuEvents);
        Ok(this)
    }

    /// Set up (again) everything the host gives the vCPU: the CPL3 special registers, XCR0 and
    /// the guest TSC, as the flavour needs them.
    fn establish(&mut self) -> Result<(), Error> {
        self.vcpu.set_sregs(&self.user_sregs).map_err(|e| kvm_err("KVM_SET_SREGS", e))?;
        if let Some(xcr0) = self.xcr0 {
            let mut xcrs = kvm_bindings::kvm_xcrs { nr_xcrs: 1, ..Default::default() };
            xcrs.xcrs[0].xcr = 0;
            xcrs.xcrs[0].value = xcr0;
            self.vcpu.set_xcrs(&xcrs).map_err(|e| kvm_err("KVM_SET_XCRS", e))?;
        }
        if self.flavour.aligns_tsc() {
            self.align_tsc()?;
        }
        self.reset = Reset::Nothing;
        Ok(())
    }

    /// Make the guest TSC read as the host's (KVM offsets it to start near 0), so that the
    /// exit-free clocks can use the host's calibration: `KVM_VCPU_TSC_OFFSET` = 0 where the
    /// kernel has it (5.16+), else write the TSC MSR with the host's current value.
    fn align_tsc(&mut self) -> Result<(), Error> {
        let zero = 0u64;
        let attr = kvm_bindings::kvm_device_attr {
            group: kvm_bindings::KVM_VCPU_TSC_CTRL,
            attr: kvm_bindings::KVM_VCPU_TSC_OFFSET as u64,
            addr: &zero as *const u64 as u64,
            flags: 0,
        };
        use crate::sandbox::seccomp::{KVM_HAS_DEVICE_ATTR, KVM_SET_DEVICE_ATTR};
        use std::os::fd::AsRawFd;
        let fd = self.vcpu.as_raw_fd();
        // SAFETY: vCPU device-attribute ioctls with a pointer to a live kvm_device_attr whose
        // `addr` points at a live u64; KVM only reads them.
        if unsafe { libc::ioctl(fd, KVM_HAS_DEVICE_ATTR as _, &attr) } == 0 {
            // SAFETY: as above.
            if unsafe { libc::ioctl(fd, KVM_SET_DEVICE_ATTR as _, &attr) } != 0 {
                return Err(kvm_err("KVM_VCPU_TSC_OFFSET", std::io::Error::last_os_error()));
            }
            return Ok(());
        }
        const MSR_IA32_TSC: u32 = 0x10;
        // SAFETY: rdtsc has no preconditions.
        let now = unsafe { std::arch::x86_64::_rdtsc() };
        let msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry { index: MSR_IA32_TSC, data: now, ..Default::default() }])
            .map_err(|e| kvm_err("TSC MSR", e))?;
        match self.vcpu.set_msrs(&msrs) {
            Ok(1) => Ok(()),
            Ok(_) => Err(Error::Resource("KVM refused to set the guest TSC".into())),
            Err(e) => Err(kvm_err("KVM_SET_MSRS (TSC)", e)),
        }
    }

    /// The guest TSC's frequency as KVM keeps it (the host kernel's calibration), if known
    /// (read once, at creation).
    pub fn tsc_khz(&self) -> Option<u32> {
        self.tsc_khz
    }

    /// The flavour of KVM this VM runs on.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    fn pt_map(&mut self, gva: u64, gpa: u64, pages: u64, perm: Perm) -> Result<(), Error> {
        self.pt_map_sized(gva, gpa, pages, perm, PageSize::Small)
    }

    fn pt_map_sized(&mut self, gva: u64, gpa: u64, pages: u64, perm: Perm, size: PageSize) -> Result<(), Error> {
        if self.pt.map(gva, gpa, pages, perm, size) {
            Ok(())
        } else {
            Err(Error::Resource("the VM's page-table pool is exhausted".into()))
        }
    }

    /// The ring server, if this VM serves host calls over the ring.
    pub fn ring(&self) -> Option<&RingServer> {
        self.ring.as_ref()
    }

    /// The watchdog thread, if calls in this VM have a timeout.
    pub fn kicker(&self) -> Option<&Kicker> {
        self.kicker.as_ref()
    }

    /// Guest address of the builtin table compiled code must use in this VM.
    pub fn builtin_table(&self) -> u64 {
        RUNTIME_GVA + if self.ring.is_some() { RT_BUILTIN_TABLE_RING } else { RT_BUILTIN_TABLE }
    }

    /// Guest stack: (lowest usable address, top).
    pub fn stack_range(&self) -> (u64, u64) {
        let lo = self.stack as u64 + STACK_GUARD;
        (lo, lo + self.stack_size)
    }

    /// Make `[host, host+len)` visible to the guest at the same address, backed by the pages
    /// at `backing` (`MapRequest`). `reserve` is the most this region will ever grow to
    /// (guest-physical space is reserved for it once); calling again with a larger `len`
    /// extends the mapping. Memslots grow by doubling.
    ///
    /// With `PageSize::Huge` (linear memories) and a 2 MiB-aligned `host`, the region's
    /// guest-physical range is 2 MiB-aligned too and its memslots are whole multiples of 2 MiB,
    /// so that every aligned 2 MiB wholly inside `len` gets a 2 MiB leaf that the hypervisor can
    /// back with one huge page (when the host memory is one: `LinearMemory` asks for them).
    pub fn map(&mut self, request: MapRequest) -> Result<(), Error> {
        let MapRequest { host, backing, reserve, len, perm, size } = request;
        debug_assert!(host.is_multiple_of(PAGE_SIZE) && host + reserve <= USER_HALF_END);
        debug_assert!(backing.is_multiple_of(PAGE_SIZE) && (size == PageSize::Small || backing == host));
        let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let reserve = reserve.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let size = if host.is_multiple_of(HUGE_PAGE) && reserve >= HUGE_PAGE { size } else { PageSize::Small };
        if !self.mappings.contains_key(&host) {
            if size == PageSize::Huge {
                self.next_gpa = self.next_gpa.div_ceil(HUGE_PAGE) * HUGE_PAGE;
            }
            let gpa = self.next_gpa;
            self.next_gpa += reserve.max(PAGE_SIZE);
            self.mappings.insert(host, Mapping { gpa, backing, reserved: reserve, slotted: 0, mapped: 0, perm, size, slots: Vec::new() });
        }
        let m = self.mappings.get_mut(&host).unwrap();
        if len > m.reserved {
            return Err(Error::Resource("mapping larger than its reservation".into()));
        }
        let (gpa, backing, perm, page_size) = (m.gpa, m.backing, m.perm, m.size);
        while m.slotted < len {
            let mut size = (m.slotted.max(64 * 1024)).max(len - m.slotted);
            if page_size == PageSize::Huge {
                size = size.div_ceil(HUGE_PAGE) * HUGE_PAGE;
            }
            let size = size.min(m.reserved - m.slotted);
            let slot = self.free_slots.pop().unwrap_or(self.next_slot);
            let region = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: gpa + m.slotted,
                memory_size: size,
                userspace_addr: backing + m.slotted,
            };
            // SAFETY: the backing range is part of a live reservation owned by the store (or
            // the code copy of a module it holds), which outlives this VM (the store drops its
            // VM first) or unmaps it before freeing it.
            if let Err(e) = unsafe { self.vm.set_user_memory_region(region) } {
                if slot != self.next_slot {
                    self.free_slots.push(slot);
                }
                return Err(kvm_err("add memslot", e));
            }
            if slot == self.next_slot {
                self.next_slot += 1;
            }
            m.slots.push((slot, m.slotted));
            m.slotted += size;
        }
        let mapped = m.mapped;
        if mapped < len {
            m.mapped = len;
            let pages = (len - mapped) / PAGE_SIZE;
            self.pt_map_sized(host + mapped, gpa + mapped, pages, perm, page_size)?;
        }
        Ok(())
    }

    /// Wipe what a finished call left in the VM outside the store's memory, so that the next
    /// call (a pooled VM's next user) cannot see it: the FPU/SIMD registers go back to their
    /// state at creation, and the pages of the guest stack that were touched (resident, as
    /// `mincore` reports) are zeroed where they are not zero already. The stack pages stay
    /// resident and mapped, so the next call does not fault them in again. Only while the
    /// guest is not running.
    pub fn scrub(&mut self) -> Result<(), Error> {
        self.flush_pending_io();
        match &self.pristine_fpu {
            // SAFETY: a kvm_xsave that KVM itself produced for this vCPU.
            Some(x) => unsafe { self.vcpu.set_xsave(x) }.map_err(|e| kvm_err("KVM_SET_XSAVE", e))?,
            None => {
                let fpu = kvm_bindings::kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
                self.vcpu.set_fpu(&fpu).map_err(|e| kvm_err("KVM_SET_FPU", e))?
            }
        }
        let (lo, hi) = self.stack_range();
        let pages = ((hi - lo) / PAGE_SIZE) as usize;
        let mut resident = vec![0u8; pages];
        // SAFETY: [lo, hi) is the stack mapping this VM owns; `resident` has a byte per page.
        if unsafe { libc::mincore(lo as *mut _, (hi - lo) as usize, resident.as_mut_ptr()) } != 0 {
            return Err(Error::Resource(format!("mincore of the guest stack: {}", std::io::Error::last_os_error())));
        }
        for (i, r) in resident.iter().enumerate() {
            if r & 1 == 0 {
                continue;
            }
            // SAFETY: one page of the stack mapping; the guest is not running.
            let page = unsafe { std::slice::from_raw_parts_mut((lo + i as u64 * PAGE_SIZE) as *mut u8, PAGE_SIZE as usize) };
            if page.iter().any(|b| *b != 0) {
                page.fill(0);
            }
        }
        Ok(())
    }

    /// Whether any of `[host, host + reserve)` is mapped into the guest.
    pub fn is_mapped(&self, host: u64) -> bool {
        self.mappings.contains_key(&host)
    }

    /// Take back the mapping of the region at `host` (a no-op if there is none), before the
    /// host frees that memory: its PTEs become non-present and its memslots are deleted, which
    /// makes KVM drop every translation to the host pages. Its guest-physical range is never
    /// handed out again. Only while the guest is not running.
    ///
    /// On an error the region may still be reachable from the guest: the caller must then keep
    /// the host memory alive (never free it) for as long as the VM lives.
    pub fn unmap(&mut self, host: u64) -> Result<(), Error> {
        let Some(mut m) = self.mappings.remove(&host) else { return Ok(()) };
        // A whole region is unmapped from its (2 MiB-aligned, if it has 2 MiB leaves) start,
        // and a 2 MiB leaf lies wholly inside `mapped`: nothing is split, nothing allocated.
        if !self.pt.unmap(host, m.mapped / PAGE_SIZE) {
            self.mappings.insert(host, m);
            return Err(Error::Resource("the VM's page-table pool is exhausted".into()));
        }
        m.mapped = 0;
        while let Some(&(slot, _)) = m.slots.last() {
            let region = kvm_userspace_memory_region { slot, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0 };
            // SAFETY: deleting one of this region's memslots; nothing of the host is mapped.
            if let Err(e) = unsafe { self.vm.set_user_memory_region(region) } {
                // Keep the record: the region is still (partly) in the guest.
                self.mappings.insert(host, m);
                return Err(kvm_err("delete memslot", e));
            }
            m.slots.pop();
            self.free_slots.push(slot);
        }
        Ok(())
    }

    /// Make the region at `host` `len` bytes long in the guest again (a memory put back to a
    /// snapshot's size): the PTEs above `len` become non-present and the memslots lying wholly
    /// above it are deleted (KVM drops every translation through them). The region keeps its
    /// guest-physical range, so growing again maps the same guest-physical addresses for the
    /// same host addresses (a translation left over can only name the page it named before). A
    /// memslot straddling `len` stays: the caller replaces the host pages above `len` with fresh
    /// zero pages (a new mapping, which makes KVM drop its translations of the old pages), so
    /// nothing of what they held is reachable. Only while the guest is not running. On an error (KVM
    /// refused to delete a memslot) the region may still be reachable above `len`.
    pub fn shrink(&mut self, host: u64, len: u64) -> Result<(), Error> {
        let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let Some(m) = self.mappings.get(&host) else { return Ok(()) };
        if len >= m.mapped {
            return Ok(());
        }
        let mapped = m.mapped;
        if !self.pt.unmap(host + len, (mapped - len) / PAGE_SIZE) {
            return Err(Error::Resource("the VM's page-table pool is exhausted (splitting a 2 MiB leaf)".into()));
        }
        let m = self.mappings.get_mut(&host).expect("looked up above");
        m.mapped = len;
        while let Some(&(slot, offset)) = m.slots.last() {
            if offset < len.max(1) {
                break;
            }
            let region = kvm_userspace_memory_region { slot, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0 };
            // SAFETY: deleting one of this region's memslots, which lies above `len`.
            unsafe { self.vm.set_user_memory_region(region) }.map_err(|e| kvm_err("delete memslot", e))?;
            m.slots.pop();
            m.slotted = offset;
            self.free_slots.push(slot);
        }
        Ok(())
    }

    /// Run `entry trampoline(code, callee vmctx, caller vmctx, values)` in the guest.
    /// `values` is a host-side buffer copied to and from the top of the guest stack.
    /// Builtin hypercalls are answered by `hypercall(number, regs, maps)`, which may ask for
    /// new mappings (memory growth); they are made before the guest resumes.
    pub fn call(
        &mut self,
        tramp: u64,
        code: u64,
        callee: u64,
        caller: u64,
        values: &mut [u128],
        hypercall: &mut dyn FnMut(u64, &kvm_regs, &mut Vec<MapRequest>) -> u64,
    ) -> Result<(), GuestStop> {
        self.flush_pending_io();
        if self.reset == Reset::Everything {
            self.establish().map_err(|e| GuestStop::Other(format!("cannot re-establish the vCPU: {e}")))?;
        }
        let (_, top) = self.stack_range();
        let slots = values.len().max(1) as u64;
        let values_at = (top - 16 * slots) & !15;
        // SAFETY: the slots lie at the top of the guest stack, which this VM owns.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), values_at as *mut u128, values.len()) };
        let sync = self.vcpu.sync_regs_mut();
        sync.regs = kvm_regs {
            rip: wasce_vmguest::ENTRY_GVA,
            rsp: values_at,
            rflags: segments::RFLAGS,
            rax: tramp,
            rdi: code,
            rsi: callee,
            rdx: caller,
            rcx: values_at,
            ..Default::default()
        };
        sync.events = kvm_vcpu_events::default();
        if self.reset == Reset::Segments {
            // The fault handler left the vCPU at CPL0: back to the CPL3 segments, through the
            // sync registers (no extra ioctl).
            sync.sregs = self.user_sregs;
            self.vcpu.set_sync_dirty_reg(SyncReg::SystemRegister);
            self.reset = Reset::Nothing;
        }
        self.vcpu.set_sync_dirty_reg(SyncReg::Register);
        self.vcpu.set_sync_dirty_reg(SyncReg::VcpuEvents);
        kick::publish(&mut self.vcpu.get_kvm_run().immediate_exit);
        let r = self.run_loop(hypercall);
        kick::publish(std::ptr::null_mut());
        self.vcpu.set_kvm_immediate_exit(0);
        if r.is_ok() {
            // SAFETY: as above; the guest may have written results there.
            unsafe { std::ptr::copy_nonoverlapping(values_at as *const u128, values.as_mut_ptr(), values.len()) };
        }
        r
    }

    fn run_loop(&mut self, hypercall: &mut dyn FnMut(u64, &kvm_regs, &mut Vec<MapRequest>) -> u64) -> Result<(), GuestStop> {
        let mut maps = Vec::new();
        loop {
            // The ring server may use the store only while the guest runs; whatever ends
            // KVM_RUN, the store is taken back before anything else (see `ring`).
            if let Some(ring) = &self.ring {
                ring.lend();
            }
            let run = self.vcpu.run();
            if let Some(ring) = &self.ring {
                if !ring.reclaim() {
                    // The exit (if an MMIO one) is not completed: let the next call flush it.
                    self.io_pending = true;
                    return Err(GuestStop::Other("a host call served over the ring panicked; the call was ended".into()));
                }
            }
            // `Err(None)`: a signal stopped KVM_RUN.
            let exit = match run {
                Ok(VcpuExit::MmioRead(addr, data)) => Ok((addr, data.len(), true)),
                Ok(VcpuExit::MmioWrite(addr, data)) => Ok((addr, data.len(), false)),
                Ok(VcpuExit::Shutdown) => {
                    let s = self.vcpu.sync_regs();
                    let fault = GuestStop::Fault { rip: s.regs.rip, vector: s.events.exception.nr, cr2: s.sregs.cr2, rbp: s.regs.rbp };
                    if self.flavour.fault_delivery() == FaultDelivery::Idt {
                        // The handlers themselves could not run (a triple fault): KVM reset the
                        // vCPU and the state above is the reset state.
                        self.reset = Reset::Everything;
                        return Err(GuestStop::Other("the guest triple-faulted; the VM was reset".into()));
                    }
                    return Err(fault);
                }
                Ok(VcpuExit::Intr) => Err(None),
                Ok(other) => {
                    self.reset = Reset::Everything;
                    Err(Some(format!("unexpected VM exit {other:?}; the VM was reset")))
                }
                Err(e) if e.errno() == libc::EINTR => Err(None),
                Err(e) => {
                    self.reset = Reset::Everything;
                    Err(Some(format!("KVM_RUN failed: {e}; the VM was reset")))
                }
            };
            let (addr, len, is_read) = match exit {
                Ok(x) => x,
                // Only the watchdog's kick is a timeout (it set `immediate_exit`); any other
                // signal of the embedder's (a timer, a profiler) just ran its handler, and the
                // guest resumes where it was.
                Err(None) if !self.kicked() => continue,
                Err(None) => return Err(self.interrupted()),
                Err(Some(msg)) => return Err(GuestStop::Other(msg)),
            };
            self.io_pending = true;
            let rip = self.vcpu.sync_regs().regs.rip;
            match hcall_number(addr, len) {
                Some(HCALL_DONE) if is_read => return Ok(()),
                Some(HCALL_FAULT) if is_read && self.flavour.fault_delivery() == FaultDelivery::Idt => return Err(self.fault_report(rip, addr)),
                Some(HCALL_RING_WAIT) if is_read && self.ring.is_some() => self.complete_mmio_read(0),
                Some(n) if is_read && n < HCALL_MAX_BUILTIN => {
                    if n == HCALL_HOST_CALL {
                        // The guest fell back to an exit: the server may be asleep.
                        if let Some(ring) = &self.ring {
                            ring.wake();
                        }
                    }
                    let regs = self.vcpu.sync_regs().regs;
                    let mut value = hypercall(n, &regs, &mut maps);
                    for m in maps.drain(..) {
                        if self.map(m).is_err() {
                            // Only memory.grow and table.grow map memory: report failure.
                            value = u64::MAX;
                        }
                    }
                    self.complete_mmio_read(value);
                }
                _ => return Err(GuestStop::BadAccess { rip, gpa: addr }),
            }
        }
    }

    /// A fault reported by the ring-0 handlers (`wasce_vmguest::fault`). Honoured only at CPL0
    /// with the stack pointer where the handler leaves it: ring-3 code making the same
    /// hypercall is a bad access, not a fault it gets to describe. The frame is read from the
    /// fault stack in slot 0, which ring 3 cannot write.
    fn fault_report(&mut self, rip: u64, gpa: u64) -> GuestStop {
        let s = self.vcpu.sync_regs();
        let frame_at = FAULT_STACK_GVA + PAGE_SIZE - 8 * FAULT_FRAME_WORDS;
        if s.sregs.cs.selector & 3 != 0 || s.sregs.cs.dpl != 0 || s.regs.rsp != frame_at {
            self.reset = Reset::Everything;
            return GuestStop::BadAccess { rip, gpa };
        }
        let (cr2, rbp) = (s.sregs.cr2, s.regs.rbp);
        // SAFETY: the frame lies in the fault-stack page of slot 0 (compile-time asserted).
        let frame: [u64; FAULT_FRAME_WORDS as usize] =
            unsafe { std::ptr::read_unaligned(self.system.add((frame_at - FAULT_STACK_GVA + FAULT_STACK_GPA) as usize) as *const _) };
        let [vector, _error, fault_rip, ..] = frame;
        self.reset = Reset::Segments;
        GuestStop::Fault { rip: fault_rip, vector: vector as u8, cr2, rbp }
    }

    /// Whether the watchdog kicked this vCPU (see `kick`).
    fn kicked(&mut self) -> bool {
        // SAFETY: reading one byte of this vCPU's mapped kvm_run; the kick handler writes it
        // with a volatile store on this same thread.
        unsafe { std::ptr::read_volatile(&self.vcpu.get_kvm_run().immediate_exit) != 0 }
    }

    fn interrupted(&mut self) -> GuestStop {
        let r = self.vcpu.sync_regs().regs;
        GuestStop::Interrupted { rip: r.rip, rbp: r.rbp }
    }

    fn complete_mmio_read(&mut self, value: u64) {
        let run = self.vcpu.get_kvm_run();
        // SAFETY: called right after an MMIO exit, so `mmio` is the active union member.
        let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
        let n = (mmio.len as usize).min(8);
        mmio.data[..n].copy_from_slice(&value.to_le_bytes()[..n]);
    }

    /// Let KVM finish an MMIO instruction we will not resume, without running the guest: it
    /// would otherwise overwrite the registers of the next call.
    fn flush_pending_io(&mut self) {
        if self.io_pending {
            self.vcpu.set_kvm_immediate_exit(1);
            let _ = self.vcpu.run();
            self.vcpu.set_kvm_immediate_exit(0);
            self.io_pending = false;
        }
    }

}
