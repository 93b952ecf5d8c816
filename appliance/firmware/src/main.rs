//! A cachet appliance on a Cortex-M7, as small as it gets: the example of
//! what a firmware provides, and the binary whose size docs/APPLIANCE.md
//! reports.
//!
//! What is real: a 1000-session replica in a `static`, smoltcp's interface
//! and UDP socket buffers in `static`s, a millisecond clock from SysTick,
//! and the appliance's main loop. What stands in for the board: the
//! network device never receives and drops what it is given (a real one is
//! an Ethernet MAC driver, which adds its own code and DMA buffers), and
//! the key, addresses and random bytes are constants where a product reads
//! its provisioning storage and its hardware RNG.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cachet_appliance::cachet_core::wire::ClusterKey;
use cachet_appliance::cachet_core::{Config as CacheConfig, Instant};
use cachet_appliance::smoltcp::iface::{
    Config as IfaceConfig, Interface, SocketSet, SocketStorage,
};
use cachet_appliance::smoltcp::phy::{self, DeviceCapabilities};
use cachet_appliance::smoltcp::socket::udp;
use cachet_appliance::smoltcp::time as phy_time;
use cachet_appliance::smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use cachet_appliance::{smoltcp_instant, Appliance, Config, MTU};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};

/// Sessions the replica holds.
const CAPACITY: u32 = 1000;
/// Largest session value: rustls' are 70 to 130 bytes (90 in the
/// end-to-end test), and up to 288 bytes cost no more memory than 256 (see
/// the cache layout's formula).
const BLOCK_SIZE: u32 = 288;
/// `Layout::new(CAPACITY, BLOCK_SIZE).total_bytes()`: 8448 bytes of header
/// and index, then 384 bytes per session. `Cache::format` checks it.
const REPLICA_BYTES: usize = 392_448;
/// Datagrams the UDP socket buffers: a few in (the appliance reads each as
/// it arrives), a bootstrap answer's burst of 8 out.
const RX_DATAGRAMS: usize = 4;
const TX_DATAGRAMS: usize = 8;
/// The core clock SysTick counts, in Hz (an STM32H7 on its 64 MHz HSI).
const CORE_HZ: u32 = 64_000_000;

/// Provisioning stand-ins: the cluster key (`cache-udp-key`), this
/// appliance's address and port, the routers' `cache-udp-server`s.
const CLUSTER_KEY: [u8; 32] = [0; 32];
const ADDRESS: (IpAddress, u8) = (IpAddress::v4(192, 0, 2, 10), 24);
const PORT: u16 = 19010;
const ROUTERS: [IpEndpoint; 2] = [
    IpEndpoint::new(IpAddress::v4(192, 0, 2, 1), 19001),
    IpEndpoint::new(IpAddress::v4(192, 0, 2, 2), 19001),
];

/// Milliseconds since boot, modulo 2^32: SysTick's only job.
static TICKS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

#[entry]
fn main() -> ! {
    // cortex-m-rt hands these to `main` as `&'static mut`, once: static
    // storage without `unsafe`.
    static mut REPLICA: [u8; REPLICA_BYTES] = [0; REPLICA_BYTES];
    static mut RX_META: [udp::PacketMetadata; RX_DATAGRAMS] =
        [udp::PacketMetadata::EMPTY; RX_DATAGRAMS];
    static mut RX_PAYLOAD: [u8; RX_DATAGRAMS * MTU] = [0; RX_DATAGRAMS * MTU];
    static mut TX_META: [udp::PacketMetadata; TX_DATAGRAMS] =
        [udp::PacketMetadata::EMPTY; TX_DATAGRAMS];
    static mut TX_PAYLOAD: [u8; TX_DATAGRAMS * MTU] = [0; TX_DATAGRAMS * MTU];
    static mut SOCKETS: [SocketStorage<'static>; 1] = [SocketStorage::EMPTY; 1];

    let mut core = cortex_m::Peripherals::take().expect("taken once");
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(CORE_HZ / 1000 - 1);
    core.SYST.clear_current();
    core.SYST.enable_interrupt();
    core.SYST.enable_counter();
    let mut clock = Clock::default();

    let mut device = NullDevice;
    let mut iface = Interface::new(
        IfaceConfig::new(HardwareAddress::Ip),
        &mut device,
        smoltcp_instant(clock.now()),
    );
    iface.update_ip_addrs(|addrs| {
        let (address, prefix) = ADDRESS;
        addrs
            .push(IpCidr::new(address, prefix))
            .expect("room for one address")
    });
    let socket = udp::Socket::new(
        udp::PacketBuffer::new(&mut RX_META[..], &mut RX_PAYLOAD[..]),
        udp::PacketBuffer::new(&mut TX_META[..], &mut TX_PAYLOAD[..]),
    );
    let mut sockets = SocketSet::new(&mut SOCKETS[..]);
    let handle = sockets.add(socket);

    let entropy = boot_entropy();
    let cache = CacheConfig {
        capacity: CAPACITY,
        block_size: BLOCK_SIZE,
        hash_key: entropy[8..].try_into().expect("16 bytes"),
    };
    let sender = u64::from_le_bytes(entropy[..8].try_into().expect("8 bytes"));
    let mut config = Config::new(ClusterKey::new(&CLUSTER_KEY), sender, cache, PORT);
    config.peers = &ROUTERS;
    let mut appliance =
        Appliance::new(&config, &mut REPLICA[..], &mut sockets, handle).expect("starting");

    loop {
        appliance.poll_stack(clock.now(), &mut iface, &mut device, &mut sockets);
        // SysTick wakes us every millisecond, a real device's receive
        // interrupt sooner; a product would also sleep longer, until
        // `appliance.poll_at()`.
        cortex_m::asm::wfi();
    }
}

/// 24 fresh random bytes at every boot: the sender id (the AEAD nonce
/// prefix) and the replica's hash key. Stand-in: a product reads its
/// hardware RNG here; constants would repeat nonces across reboots.
fn boot_entropy() -> [u8; 24] {
    [0x5a; 24]
}

/// SysTick's wrapping millisecond count, extended to 64 bits.
#[derive(Default)]
struct Clock {
    last: u32,
    high: u64,
}

impl Clock {
    fn now(&mut self) -> Instant {
        let ticks = TICKS.load(Ordering::Relaxed);
        if ticks < self.last {
            self.high += 1 << 32;
        }
        self.last = ticks;
        Instant::from_millis(self.high | u64::from(ticks))
    }
}

/// A network device that never receives and drops what it sends: enough
/// to size the firmware (every receive path included), nothing to run it
/// on a network with.
struct NullDevice;

struct NullToken;

impl phy::RxToken for NullToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let frame = [0u8; 1500];
        f(core::hint::black_box(&frame[..]))
    }
}

impl phy::TxToken for NullToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = [0u8; 1500];
        f(&mut frame[..len.min(1500)])
    }
}

impl phy::Device for NullDevice {
    type RxToken<'a> = NullToken;
    type TxToken<'a> = NullToken;

    fn receive(&mut self, _: phy_time::Instant) -> Option<(NullToken, NullToken)> {
        // Never true, but opaque to the optimiser, so that smoltcp's
        // receive path stays in the binary and in its size.
        core::hint::black_box(false).then_some((NullToken, NullToken))
    }

    fn transmit(&mut self, _: phy_time::Instant) -> Option<NullToken> {
        Some(NullToken)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        cachet_appliance::ip_device_capabilities()
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
