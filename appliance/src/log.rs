//! Logging through defmt when the `defmt` feature is on, and not at all
//! otherwise: an appliance has no other log sink, and the crate must not
//! pull in formatting machinery the firmware did not ask for.
//!
//! Without the feature the arguments are still borrowed, so a value used
//! only for logging does not become an unused variable.

macro_rules! log {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        defmt::$level!($fmt $(, $arg)*);
        #[cfg(not(feature = "defmt"))]
        {
            $(let _ = &$arg;)*
        }
    }};
}

macro_rules! debug {
    ($($t:tt)*) => { log!(debug, $($t)*) };
}

macro_rules! info {
    ($($t:tt)*) => { log!(info, $($t)*) };
}

macro_rules! warn {
    ($($t:tt)*) => { log!(warn, $($t)*) };
}
