#![doc = include_str!("../README.md")]

pub mod merkle;
pub mod note;
