//! `version`: keelctl's version and the etcd API version it speaks.

use crate::error::Result;
use crate::outln;

pub fn run() -> Result<()> {
    outln!("keelctl version: {}", env!("CARGO_PKG_VERSION"));
    outln!("API version: 3.4");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_takes_no_arguments() {
        let cli = crate::parse(vec!["keelctl".into(), "version".into()])
            .unwrap()
            .0;
        assert!(matches!(cli.cmd, crate::cmd::Command::Version));
        assert!(crate::parse(vec!["keelctl".into(), "version".into(), "x".into()]).is_err());
    }
}
