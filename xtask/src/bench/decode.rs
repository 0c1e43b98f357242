use anyhow::{Result, bail};

use crate::Ctx;

pub fn run(_ctx: &Ctx, _args: &[String]) -> Result<()> {
    bail!("bench decode is not written yet")
}
