//! A small hand-written argument parser shared by the tasks (no clap: xtask keeps few dependencies).
//!
//! Take the options first (`--name value`, `--name=value`, `--switch`), then the positional
//! arguments, then call [`Args::finish`], which rejects anything left over.

use std::collections::VecDeque;
use std::fmt::Display;
use std::str::FromStr;

use anyhow::{Context, bail};

/// The arguments of one task, consumed as they are recognised.
#[derive(Debug)]
pub(crate) struct Args {
    items: VecDeque<String>,
}

impl Args {
    /// Wraps an argument list (without the task name).
    pub(crate) fn new(args: impl IntoIterator<Item = String>) -> Self {
        Self {
            items: args.into_iter().collect(),
        }
    }

    /// Removes `--name` and says whether it was there.
    pub(crate) fn switch(&mut self, name: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|a| a != name);
        self.items.len() != before
    }

    /// Removes `--name VALUE` (or `--name=VALUE`) and parses the value; the last one wins.
    pub(crate) fn value<T>(&mut self, name: &str) -> anyhow::Result<Option<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        let mut found = None;
        let mut i = 0;
        while i < self.items.len() {
            let raw = if self.items[i] == name {
                self.items.remove(i);
                match self.items.remove(i) {
                    Some(v) if !v.starts_with("--") => v,
                    _ => bail!("{name} needs a value"),
                }
            } else if let Some(v) = self.items[i].strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                let v = v.to_owned();
                self.items.remove(i);
                v
            } else {
                i += 1;
                continue;
            };
            let parsed = raw
                .parse::<T>()
                .map_err(|e| anyhow::anyhow!("{name} {raw:?}: {e}"))?;
            found = Some(parsed);
        }
        Ok(found)
    }

    /// Like [`Args::value`], with a default.
    pub(crate) fn value_or<T>(&mut self, name: &str, default: T) -> anyhow::Result<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.value(name)?.unwrap_or(default))
    }

    /// Removes and returns the first argument that is not an option.
    pub(crate) fn positional(&mut self, what: &str) -> anyhow::Result<String> {
        let i = self
            .items
            .iter()
            .position(|a| !a.starts_with('-'))
            .with_context(|| format!("missing {what}"))?;
        self.items.remove(i).with_context(|| format!("missing {what}"))
    }

    /// Fails if any argument was not recognised.
    pub(crate) fn finish(self) -> anyhow::Result<()> {
        if let Some(first) = self.items.front() {
            let all: Vec<&str> = self.items.iter().map(String::as_str).collect();
            bail!(
                "unexpected argument {first:?} (not understood: {})",
                all.join(" ")
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Args {
        Args::new(s.split_whitespace().map(String::from))
    }

    #[test]
    fn values_switches_and_positionals() -> anyhow::Result<()> {
        let mut a = args("echo --members 3 --release --port=18080");
        assert_eq!(a.value::<u16>("--port")?, Some(18080));
        assert_eq!(a.value::<usize>("--members")?, Some(3));
        assert!(a.switch("--release"));
        assert!(!a.switch("--release"));
        assert_eq!(a.positional("NAME")?, "echo");
        a.finish()
    }

    #[test]
    fn defaults_and_last_value_wins() -> anyhow::Result<()> {
        let mut a = args("--secs 1 --secs 2");
        assert_eq!(a.value_or("--secs", 10u64)?, 2);
        assert_eq!(a.value_or("--conns", 100usize)?, 100);
        a.finish()
    }

    #[test]
    fn errors() {
        assert!(args("--port").value::<u16>("--port").is_err());
        assert!(args("--port --release").value::<u16>("--port").is_err());
        assert!(args("--port x").value::<u16>("--port").is_err());
        assert!(args("--port 70000").value::<u16>("--port").is_err());
        assert!(args("--bogus").finish().is_err());
        assert!(args("").positional("NAME").is_err());
        assert!(args("--release").positional("NAME").is_err());
    }

    #[test]
    fn prefix_of_another_option_is_not_a_match() -> anyhow::Result<()> {
        let mut a = args("--portal=1");
        assert_eq!(a.value::<u16>("--port")?, None);
        assert!(a.finish().is_err());
        Ok(())
    }
}
