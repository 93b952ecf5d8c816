//! `cachet-selfcheck`: runs every check of `cachet_core::selfcheck` on a
//! Cortex-M3 and reports over semihosting.
//!
//! One line per check (`ok NAME` or `FAILED NAME: why`), then the summary
//! `N passed, M failed`, then a semihosting exit whose status is the
//! emulator's: `cargo run --release` under qemu fails exactly when a check
//! does. A panic prints its message and exits with failure too
//! (panic-semihosting's `exit` feature), so CI never waits on a dead board.

#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use cachet_core::selfcheck;
use cortex_m_rt::entry;
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use cortex_m_semihosting::hprintln;
use panic_semihosting as _;

#[entry]
fn main() -> ! {
    let tally = selfcheck::run_all(|check, outcome| match outcome {
        Ok(()) => hprintln!("ok {}", check.name),
        Err(failure) => hprintln!("FAILED {}: {}", check.name, failure),
    });
    hprintln!("{}", tally);
    debug::exit(if tally.failed == 0 {
        EXIT_SUCCESS
    } else {
        EXIT_FAILURE
    });
    // Only reached on a host without semihosting exit support.
    loop {
        cortex_m::asm::wfi();
    }
}
