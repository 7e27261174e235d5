//! `crit inspect ARCHIVE`: a summary of a container checkpoint archive (podman's `--export`, the
//! kubelet's), in the spirit of checkpointctl's `show`/`inspect`: engine, container name and id,
//! image, runtime, times, sizes (images, root fs diff), the processes (as `crit x ps`), the mounts
//! of the OCI spec, and the network addresses of `network.status`. `--json` prints the same as
//! one JSON object: `archive`, `compression`, `archive_size`, `engine`, `container`, `id`,
//! `image`, `image_id`, `runtime`, `created`, `checkpointed`, `pod`, `namespace`,
//! `checkpoint_size`, `images`, `rootfs_diff_size`, `processes` (the `crit x ps --json` rows),
//! `mounts` (`destination`, `type`, `source`), `network` (`network`, `interface`, `address`, `mac`);
//! what the archive does not say is null.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use crate::archive::Archive;
use crate::cmd::show::human_size;
use crate::cmd::x::{explore_text, What};
use crate::io::write_output;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The checkpoint archive (tar, tar.gz or tar.zst)
    #[arg(value_name = "ARCHIVE")]
    pub archive: PathBuf,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

fn meta_json(a: &Archive, name: &str) -> Result<Option<Value>> {
    let Some(b) = a.meta.get(name) else { return Ok(None) };
    serde_json::from_slice(b)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}:{name}: not JSON: {e}", a.path.display()))
}

fn s(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// The addresses of `network.status`: podman 4's map of network name to status block
/// (`interfaces` -> name -> `subnets[].ipnet`, `mac_address`), or CNI results (`ips[].address`).
fn network(v: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut block = |net: &str, b: &Value| {
        if let Some(ifs) = b.get("interfaces").and_then(Value::as_object) {
            for (ifname, i) in ifs {
                let mac = s(i.get("mac_address"));
                for sn in i.get("subnets").and_then(Value::as_array).into_iter().flatten() {
                    out.push(json!({"network": net, "interface": ifname, "address": s(sn.get("ipnet")), "mac": mac}));
                }
            }
        }
        for ip in b.get("ips").and_then(Value::as_array).into_iter().flatten() {
            out.push(json!({"network": net, "interface": null, "address": s(ip.get("address")), "mac": null}));
        }
    };
    match v {
        Value::Object(m) if m.contains_key("interfaces") || m.contains_key("ips") => block("-", v),
        Value::Object(m) => m.iter().for_each(|(k, b)| block(k, b)),
        Value::Array(a) => a.iter().for_each(|b| block("-", b)),
        _ => {}
    }
    out
}

/// The summary as JSON (see the module doc).
pub fn summary(a: &Archive) -> Result<Value> {
    let config = meta_json(a, "config.dump")?.unwrap_or(Value::Null);
    let spec = meta_json(a, "spec.dump")?.unwrap_or(Value::Null);
    let ann = spec.get("annotations");
    let an = |k: &str| s(ann.and_then(|m| m.get(k)));
    let engine = match an("io.container.manager").as_deref() {
        Some("libpod") => "Podman",
        Some("cri-o") => "CRI-O",
        _ if a.meta.contains_key("status") => "containerd",
        _ if an("io.kubernetes.pod.name").is_some() => "Kubernetes",
        _ if config.is_object() => "Podman",
        _ => "unknown",
    };
    let set = cryo_image::ImageSet::open(a.image_dir())?;
    let ps: Value = serde_json::from_str(&explore_text(&set, What::Ps, true, None)?)?;
    let mounts: Vec<Value> = spec
        .get("mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(
            |m| json!({"destination": s(m.get("destination")), "type": s(m.get("type")), "source": s(m.get("source"))}),
        )
        .collect();
    let net = meta_json(a, "network.status")?.map(|v| network(&v)).unwrap_or_default();
    let images = a.members.iter().filter(|m| m.path.starts_with("checkpoint/")).count();
    Ok(json!({
        "archive": a.path.display().to_string(),
        "compression": a.compression.name(),
        "archive_size": a.file_size,
        "engine": engine,
        "container": s(config.get("name")).or_else(|| an("io.kubernetes.container.name")),
        "id": s(config.get("id")),
        "image": s(config.get("rootfsImageName")).or_else(|| s(config.get("rootfsImageRef"))),
        "image_id": s(config.get("rootfsImage")),
        "runtime": s(config.get("runtime")),
        "created": s(config.get("createdTime")),
        "checkpointed": s(config.get("checkpointedTime")),
        "pod": an("io.kubernetes.pod.name"),
        "namespace": an("io.kubernetes.pod.namespace"),
        "checkpoint_size": a.checkpoint_size(),
        "images": images,
        "rootfs_diff_size": a.member_size("rootfs-diff.tar"),
        "processes": ps,
        "mounts": mounts,
        "network": net,
    }))
}

/// The summary for people.
pub fn render(v: &Value, ps_text: &str) -> String {
    let g = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let mut out = String::new();
    let mut line = |k: &str, val: String| out.push_str(&format!("{k:<14}{val}\n"));
    line(
        "archive:",
        format!(
            "{} ({}, {})",
            g("archive"),
            g("compression"),
            human_size(v["archive_size"].as_u64().unwrap_or(0))
        ),
    );
    line("engine:", g("engine"));
    line("container:", g("container"));
    line("id:", g("id"));
    let image = match (v["image"].as_str(), v["image_id"].as_str()) {
        (Some(n), Some(i)) if n != i => format!("{n} ({i})"),
        (Some(n), _) => n.into(),
        (None, Some(i)) => i.into(),
        _ => "-".into(),
    };
    line("image:", image);
    line("runtime:", g("runtime"));
    line("created:", g("created"));
    line("checkpointed:", g("checkpointed"));
    if v["pod"].is_string() {
        line("pod:", format!("{} (namespace {})", g("pod"), g("namespace")));
    }
    line(
        "checkpoint:",
        format!(
            "{} images, {}",
            v["images"],
            human_size(v["checkpoint_size"].as_u64().unwrap_or(0))
        ),
    );
    line(
        "root fs diff:",
        v["rootfs_diff_size"]
            .as_u64()
            .map(|n| format!("{} (rootfs-diff.tar)", human_size(n)))
            .unwrap_or_else(|| "none".into()),
    );
    out.push_str("processes:\n");
    for l in ps_text.lines() {
        out.push_str(&format!("  {l}\n"));
    }
    let mounts = v["mounts"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "mounts:{}\n",
        if mounts.is_empty() { " none in spec.dump" } else { "" }
    ));
    let w = mounts
        .iter()
        .map(|m| m["destination"].as_str().unwrap_or("-").len())
        .max()
        .unwrap_or(0);
    for m in &mounts {
        let f = |k: &str| m[k].as_str().unwrap_or("-").to_string();
        out.push_str(&format!(
            "  {:<w$}  {:<8}  {}\n",
            f("destination"),
            f("type"),
            f("source")
        ));
    }
    let net = v["network"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "network:{}\n",
        if net.is_empty() { " none in network.status" } else { "" }
    ));
    for n in &net {
        let f = |k: &str| n[k].as_str().unwrap_or("-").to_string();
        out.push_str(&format!(
            "  {}  {}  {}  mac {}\n",
            f("network"),
            f("interface"),
            f("address"),
            f("mac")
        ));
    }
    out
}

pub fn run(a: &InspectArgs) -> Result<()> {
    if a.archive.is_dir() {
        anyhow::bail!(
            "{}: a directory; crit inspect reads a checkpoint archive (crit x DIR ps explores a directory)",
            a.archive.display()
        );
    }
    let ar = Archive::open(&a.archive)?;
    let v = summary(&ar)?;
    let text = if a.json {
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        let set = cryo_image::ImageSet::open(ar.image_dir())?;
        render(&v, &explore_text(&set, What::Ps, false, None)?)
    };
    write_output(None, text.as_bytes())
}
