//! Exit-free WASI in the VM: the data the guest routines read (`wasce_hypercall::WD_*`):
//! arguments and environment as NUL-terminated strings with their offsets, and the clock
//! calibration that turns the TSC (the host's: unchanged on kvm_pvm, offset 0 on standard KVM,
//! `kvm::flavour`) into realtime and monotonic nanoseconds. The rate is the kernel's own TSC
//! frequency as KVM reports it for the vCPU (`KVM_GET_TSC_KHZ`) where it can (no waiting), else
//! measured over 2 ms once per process (which alone drifts by the measurement's error: ~0.1 %
//! on a busy host).

use super::misc::now;
use std::sync::OnceLock;
use std::time::Duration;
use wasce_hypercall::*;

/// TSC → ns: at TSC `tsc`, the realtime and monotonic clocks read `clocks`; `mult` is ns per
/// tick in 32.32 fixed point.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    pub tsc: u64,
    pub mult: u64,
    pub clocks: [u64; 2],
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn measure() -> Calibration {
    let sample = || {
        let (t0, m, t1) = (rdtsc(), now(1).unwrap_or(0), rdtsc());
        (t0 / 2 + t1 / 2, m)
    };
    let (tsc_a, mono_a) = sample();
    std::thread::sleep(Duration::from_millis(2));
    let (tsc_b, mono_b) = sample();
    let ticks = tsc_b.saturating_sub(tsc_a).max(1);
    let mult = (((mono_b - mono_a) as u128) << 32) / ticks as u128;
    let tsc = rdtsc();
    Calibration { tsc, mult: mult as u64, clocks: [now(0).unwrap_or(0), now(1).unwrap_or(0)] }
}

static CALIBRATION: OnceLock<Calibration> = OnceLock::new();

/// The calibration for a guest TSC running at `tsc_khz` if KVM reported it: the rate as given,
/// and the clocks read at a TSC sample now, with no waiting. Else measured, once per process
/// (2 ms, on the caller's thread: every KVM since Linux 3.x reports the rate).
pub fn calibration(tsc_khz: Option<u32>) -> Calibration {
    match tsc_khz.filter(|k| *k > 0) {
        Some(khz) => {
            let (t0, mono, t1) = (rdtsc(), now(1).unwrap_or(0), rdtsc());
            let real = now(0).unwrap_or(0);
            Calibration { tsc: t0 / 2 + t1 / 2, mult: ((1_000_000u128 << 32) / khz as u128) as u64, clocks: [real, mono] }
        }
        None => *CALIBRATION.get_or_init(measure),
    }
}

/// The `WD_*` block for these arguments and environment variables, laid out for address `at`;
/// `tsc_khz` is the guest TSC's frequency if KVM reported it.
pub fn data_block(args: &[String], env: &[String], at: u64, tsc_khz: Option<u32>) -> Vec<u8> {
    let strings = |list: &[String]| {
        let mut blob = Vec::new();
        let mut offsets = Vec::new();
        for s in list {
            offsets.extend_from_slice(&(blob.len() as u32).to_le_bytes());
            blob.extend_from_slice(s.as_bytes());
            blob.push(0);
        }
        (blob, offsets)
    };
    let (args_blob, args_offsets) = strings(args);
    let (env_blob, env_offsets) = strings(env);
    let cal = calibration(tsc_khz);
    let mut b = vec![0u8; WD_SIZE as usize];
    let put32 = |b: &mut Vec<u8>, at: u64, v: u32| b[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
    put32(&mut b, WD_ARGC, args.len() as u32);
    put32(&mut b, WD_ARGS_SIZE, args_blob.len() as u32);
    put32(&mut b, WD_ENVC, env.len() as u32);
    put32(&mut b, WD_ENV_SIZE, env_blob.len() as u32);
    let mut tail = Vec::new();
    let place = |tail: &mut Vec<u8>, bytes: &[u8]| {
        let addr = at + WD_SIZE + tail.len() as u64;
        tail.extend_from_slice(bytes);
        while !tail.len().is_multiple_of(8) {
            tail.push(0);
        }
        addr
    };
    let fields = [
        (WD_ARGS, place(&mut tail, &args_blob)),
        (WD_ARGS_OFFSETS, place(&mut tail, &args_offsets)),
        (WD_ENV, place(&mut tail, &env_blob)),
        (WD_ENV_OFFSETS, place(&mut tail, &env_offsets)),
        (WD_TSC_BASE, cal.tsc),
        (WD_TSC_MULT, cal.mult),
        (WD_CLOCK_BASE, cal.clocks[0]),
        (WD_CLOCK_BASE + 8, cal.clocks[1]),
    ];
    for (field, value) in fields {
        b[field as usize..field as usize + 8].copy_from_slice(&value.to_le_bytes());
    }
    b.extend_from_slice(&tail);
    b
}
