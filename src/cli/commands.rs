//! What each subcommand does, in terms of the library layers; printing lives here.

use std::path::PathBuf;

use super::{Failure, Format, out, parse_node_id, parse_size};
use crate::ids::NodeId;
use crate::reconcile;
use crate::spec::{self, RawMount, RawNode, RawPeer, RawSpec, Spec};

pub fn validate(files: &[PathBuf], format: Format) -> Result<(), Failure> {
    let reports: Vec<spec::Report> = files.iter().map(|file| spec::validate_file(file)).collect();
    let all_valid = reports.iter().all(|report| report.valid);
    match format {
        Format::Text => {
            let mut text = String::new();
            for report in &reports {
                for problem in &report.problems {
                    text.push_str(&problem.to_string());
                    text.push('\n');
                }
            }
            out(&text)?;
        }
        Format::Json => {
            let value = serde_json::json!({ "valid": all_valid, "files": reports });
            out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&value).map_err(Failure::runtime)?
            ))?;
        }
    }
    if all_valid {
        Ok(())
    } else {
        let count: usize = reports.iter().map(|report| report.problems.len()).sum();
        Err(Failure::input(format!("{count} problem(s) found")))
    }
}

pub fn init(
    volume: PathBuf,
    node_id: Option<String>,
    block_size: Option<String>,
    mount: Option<PathBuf>,
    peers: Vec<String>,
) -> Result<(), Failure> {
    let node = match node_id {
        Some(text) => parse_node_id(&text)?,
        None => NodeId::random(),
    };
    out(&spec_text(volume, node, block_size, mount, peers, "")?)
}

/// A new, valid spec as `init` prints it, with `header` (comment lines)
/// after the standard ones.
pub(super) fn spec_text(
    volume: PathBuf,
    node: NodeId,
    block_size: Option<String>,
    mount: Option<PathBuf>,
    peers: Vec<String>,
    header: &str,
) -> Result<String, Failure> {
    let block_size = Some(parse_size(block_size.as_deref().unwrap_or("1MiB"))?);
    let mut raw_peers = Vec::new();
    for peer in peers {
        let (id, path) = peer
            .split_once('=')
            .ok_or_else(|| Failure::input(format!("--peer {peer:?}: write ID=PATH")))?;
        raw_peers.push(RawPeer {
            id: parse_node_id(id)?.to_string(),
            path: PathBuf::from(path),
            replicate: None,
            owner: None,
        });
    }
    let raw = RawSpec {
        volume,
        node: RawNode {
            id: node.to_string(),
            major: None,
        },
        block_size,
        compression: None,
        verify_reads: None,
        peers: raw_peers,
        mount: mount.map(|path| RawMount {
            path: Some(path),
            ownership: None,
            history_dir: None,
        }),
        sync: Some(spec::RawSync {
            interval: Some("30s".parse().map_err(Failure::runtime)?),
            timeout: None,
            full_check: None,
        }),
        retention: None,
        ignore: Vec::new(),
        cache: None,
        copies: None,
    };
    let yaml = serde_yaml::to_string(&raw).map_err(Failure::runtime)?;
    let text = format!(
        "# yaml-language-server: $schema=./globofs-volume.schema.json\n# GloboFS volume spec; check it with `globofs validate FILE`.\n{header}{yaml}"
    );
    let report = spec::validate_text("(generated)", &text);
    if !report.valid {
        let lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        return Err(Failure::input(lines.join("\n")));
    }
    Ok(text)
}

pub fn reconcile(spec: &Spec, dry_run: bool) -> Result<(), Failure> {
    let outcome = reconcile::reconcile(spec, dry_run).map_err(|err| match err {
        reconcile::ReconcileError::NotOurs { .. }
        | reconcile::ReconcileError::UnknownOwner { .. } => Failure::input(err),
        reconcile::ReconcileError::OwnerLookup { .. } => Failure::runtime(err),
        reconcile::ReconcileError::Store(err) => err.into(),
    })?;
    let mut text = String::new();
    let prefix = if dry_run { "would " } else { "" };
    for action in &outcome.actions {
        text.push_str(&format!("{prefix}{action}\n"));
    }
    if outcome.actions.is_empty() {
        text.push_str(&format!(
            "nothing to do: {} matches the spec\n",
            spec.volume.display()
        ));
    }
    out(&text)?;
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// Writes `globofs.1` and one page per subcommand into `dir`.
pub fn man(dir: &std::path::Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)?;
    let command = super::command();
    let mut pages = vec![("globofs".to_string(), command.clone())];
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let name = format!("globofs-{}", sub.get_name());
        pages.push((
            name.clone(),
            sub.clone()
                .name(clap::builder::Str::from(name.leak() as &'static str)),
        ));
    }
    for (name, page) in pages {
        let mut buffer = Vec::new();
        clap_mangen::Man::new(page).render(&mut buffer)?;
        std::fs::write(dir.join(format!("{name}.1")), buffer)?;
    }
    Ok(())
}
