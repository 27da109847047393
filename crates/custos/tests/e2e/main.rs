//! The `custos` binary end to end, in one test binary: admin commands and `serve`
//! processes over real HTTP (`cli`), and traces into a real OTLP receiver (`traces`).

mod common;

mod cli;
mod evidence;
mod ledger;
mod traces;
