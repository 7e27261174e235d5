//! `crit x DIR cg`: the tree's cgroups — each task's set (core's `cg_set`; inventory's
//! `root_cg_set` is the dumper's own), each set's cgroup per hierarchy, and the cgroups of
//! cgroup.img with their controllers' settings.

use serde::Serialize;

use cryo_image::{pb, ImageSet};

use super::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Cgroups {
    /// The dumper's own set (tasks in it were in the dumper's cgroups).
    pub root_set: Option<u32>,
    /// (pid, set) in pstree order.
    pub tasks: Vec<(u32, u32)>,
    pub sets: Vec<Set>,
    pub controllers: Vec<Controller>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Set {
    pub id: u32,
    /// (hierarchy as /proc/PID/cgroup names it, "" for v2; path; cgns_prefix).
    pub members: Vec<(String, String, u32)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Controller {
    pub cnames: Vec<String>,
    pub dirs: Vec<Dir>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dir {
    /// Below the hierarchy's root.
    pub path: String,
    pub mode: Option<u32>,
    /// (name, value) of the settings (cgroup.procs and tasks hold only permissions).
    pub props: Vec<(String, String)>,
}

fn flatten(d: &pb::CgroupDirEntry, parent: Option<&str>, out: &mut Vec<Dir>) {
    let path = match parent {
        None => format!("/{}", d.dir_name.trim_matches('/')),
        Some(p) => format!("{}/{}", p.trim_end_matches('/'), d.dir_name),
    };
    out.push(Dir {
        path: path.clone(),
        mode: d.dir_perms.map(|p| p.mode & 0o7777),
        props: d
            .properties
            .iter()
            .filter(|p| p.name != "cgroup.procs" && p.name != "tasks")
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect(),
    });
    for c in &d.children {
        flatten(c, Some(&path), out);
    }
}

pub fn build(set: &ImageSet) -> Result<Cgroups> {
    let inv = set.inventory()?;
    let mut tasks = Vec::new();
    for p in set.pstree()? {
        let Ok(core) = set.core(p.pid) else { continue };
        let cg = core
            .thread_core
            .as_ref()
            .and_then(|t| t.cg_set)
            .or(core.tc.as_ref().and_then(|t| t.cg_set));
        if let Some(cg) = cg {
            tasks.push((p.pid, cg));
        }
    }
    let e: Option<pb::CgroupEntry> = if set.has("cgroup.img") {
        set.entries::<pb::CgroupEntry>("cgroup.img", "CGROUP")?
            .into_iter()
            .next()
    } else {
        None
    };
    let e = e.unwrap_or_default();
    Ok(Cgroups {
        root_set: inv.root_cg_set,
        tasks,
        sets: e
            .sets
            .iter()
            .map(|s| Set {
                id: s.id,
                members: s
                    .ctls
                    .iter()
                    .map(|m| (m.name.clone(), m.path.clone(), m.cgns_prefix.unwrap_or(0)))
                    .collect(),
            })
            .collect(),
        controllers: e
            .controllers
            .iter()
            .map(|c| {
                let mut dirs = Vec::new();
                for d in &c.dirs {
                    flatten(d, None, &mut dirs);
                }
                Controller {
                    cnames: c.cnames.clone(),
                    dirs,
                }
            })
            .collect(),
    })
}

fn hier(name: &str) -> &str {
    if name.is_empty() {
        "cgroup2"
    } else {
        name
    }
}

pub fn render(c: &Cgroups) -> String {
    let mut s = String::new();
    for (pid, set) in &c.tasks {
        let own = if Some(*set) == c.root_set {
            " (the dumper's cgroups)"
        } else {
            ""
        };
        s.push_str(&format!("pid {pid}: set {set}{own}\n"));
    }
    for set in &c.sets {
        s.push_str(&format!("set {}:\n", set.id));
        for (n, p, pre) in &set.members {
            let ns = if *pre > 0 {
                format!("  (cgroup namespace root {})", &p[..(*pre as usize).min(p.len())])
            } else {
                String::new()
            };
            s.push_str(&format!("  {:<28} {p}{ns}\n", hier(n)));
        }
    }
    for ctl in c.controllers.iter().filter(|c| !c.dirs.is_empty()) {
        let names: Vec<&str> = ctl.cnames.iter().map(|n| hier(n)).collect();
        s.push_str(&format!("hierarchy {}:\n", names.join(",")));
        for d in &ctl.dirs {
            match d.mode {
                Some(m) => s.push_str(&format!("  {} (mode {m:o})\n", d.path)),
                None => s.push_str(&format!("  {}\n", d.path)),
            }
            for (n, v) in &d.props {
                s.push_str(&format!("    {n} = {}\n", v.replace('\n', "\\n")));
            }
        }
    }
    if c.sets.is_empty() {
        s.push_str("every task is in the dumper's cgroups (no cgroup.img)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sets_and_settings() {
        let c = Cgroups {
            root_set: Some(1),
            tasks: vec![(4, 2)],
            sets: vec![Set {
                id: 2,
                members: vec![("".into(), "/a/t".into(), 2), ("memory".into(), "/a/t".into(), 0)],
            }],
            controllers: vec![Controller {
                cnames: vec!["memory".into()],
                dirs: vec![Dir {
                    path: "/a/t".into(),
                    mode: Some(0o755),
                    props: vec![("memory.limit_in_bytes".into(), "67108864".into())],
                }],
            }],
        };
        let t = render(&c);
        assert!(t.contains("pid 4: set 2\n"), "{t}");
        assert!(t.contains("cgroup2") && t.contains("(cgroup namespace root /a)"), "{t}");
        assert!(t.contains("    memory.limit_in_bytes = 67108864\n"), "{t}");
    }
}
