#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod bundle;
pub mod dsse;
pub mod export;
pub mod intoto;
pub mod merkle;
pub mod note;
pub mod tsa;
