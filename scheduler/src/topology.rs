//! The hardware topology: NUMA nodes with their cores and memory, and the GPUs with the node
//! each one hangs off.
//!
//! [`Topology`] is plain data, so placement is tested on any shape of machine. It is built
//! from hwloc ([`Topology::discover`] on this machine, [`Topology::from_synthetic`] or
//! [`Topology::from_xml`] in tests) or by hand. [`Binder`] pins threads to a node's cores and
//! binds their memory to the node through hwloc; a binding that the host refuses (a container
//! with a restricted cpuset, for example) becomes a warning, never a failure.
//!
//! GPU memory and locality also come from sysfs ([`sysfs_gpus`], over a root directory so
//! tests use a fake tree): each display-class PCI device's `numa_node` (`-1`: unknown) and
//! `local_cpulist`, its memory from `mem_info_vram_total` (amdgpu) or
//! `/proc/driver/nvidia/gpus/ADDRESS/information` when the driver states it there; a probed
//! GPU backend's reported memory fills in what neither says ([`Topology::set_gpu_memory`]).
//! The scheduler admits jobs on each GPU against a budget derived from that memory
//! ([`crate::placement::gpu_budget`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hwlocality::cpu::binding::CpuBindingFlags;
use hwlocality::cpu::cpuset::CpuSet;
use hwlocality::memory::binding::{MemoryBindingFlags, MemoryBindingPolicy};
use hwlocality::memory::nodeset::NodeSet;
use hwlocality::object::TopologyObject;
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;
use hwlocality::topology::builder::TypeFilter;

use crate::SchedulerError;

/// One NUMA node: its cores (operating-system indices of its processing units) and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaNode {
    /// The node's operating-system index.
    pub os_index: usize,
    /// Operating-system indices of the processing units local to the node, ascending.
    pub cpus: Vec<usize>,
    /// The node's local memory in bytes (0 if the topology does not say).
    pub memory_bytes: u64,
}

/// One GPU and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    /// The device's PCI address, `domain:bus:device.function` in hex.
    pub pci_address: String,
    /// PCI vendor id.
    pub vendor_id: u16,
    /// PCI device id.
    pub device_id: u16,
    /// Index into [`Topology::nodes`] of the node the device is local to; `None` when the
    /// platform does not say (sysfs `numa_node` of `-1`, or a device attached to the whole
    /// machine): it may then be driven from any node.
    pub node: Option<usize>,
    /// The device's memory in bytes; 0 when neither sysfs nor a probed backend says.
    pub memory_bytes: u64,
}

/// The machine as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The NUMA nodes, in operating-system index order (at least one).
    pub nodes: Vec<NumaNode>,
    /// The GPUs, in PCI address order.
    pub gpus: Vec<GpuDevice>,
}

/// Whether a PCI class id (class and subclass, as hwloc reports it) is a display or 3D
/// controller, which is how GPUs and compute accelerators enumerate.
pub fn is_gpu_class(class_id: u16) -> bool {
    class_id >> 8 == 0x03
}

/// Parses a sysfs `numa_node` file's content: a node index, or `-1` when the platform does
/// not know (returned as `None`, meaning "any node").
///
/// # Errors
/// [`SchedulerError::Topology`] if the text is not an integer of at least `-1`.
pub fn parse_sysfs_numa_node(text: &str) -> Result<Option<usize>, SchedulerError> {
    let trimmed = text.trim();
    match trimmed.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(n) if n >= 0 => usize::try_from(n).map(Some).map_err(|_| bad_sysfs(trimmed)),
        _ => Err(bad_sysfs(trimmed)),
    }
}

fn bad_sysfs(text: &str) -> SchedulerError {
    SchedulerError::Topology {
        message: format!(
            "sysfs numa_node holds `{}`, expected a node index or -1",
            crate::job::truncate_utf8(text, 32)
        ),
    }
}

fn hwloc_error(what: &str, err: impl std::fmt::Display) -> SchedulerError {
    SchedulerError::Topology {
        message: format!("{what}: {err}"),
    }
}

impl Topology {
    /// One node holding `cpus` processing units and `memory_bytes` of memory, no GPU: the
    /// fallback when hwloc cannot describe the machine.
    pub fn single_node(cpus: usize, memory_bytes: u64) -> Self {
        Self {
            nodes: vec![NumaNode {
                os_index: 0,
                cpus: (0..cpus.max(1)).collect(),
                memory_bytes,
            }],
            gpus: Vec::new(),
        }
    }

    /// Discovers this machine with hwloc (I/O objects included, so that GPUs are found).
    ///
    /// # Errors
    /// [`SchedulerError::Topology`] if hwloc cannot build the topology.
    pub fn discover() -> Result<(Self, hwlocality::Topology), SchedulerError> {
        let topology = hwlocality::Topology::builder()
            .with_io_type_filter(TypeFilter::KeepImportant)
            .map_err(|e| hwloc_error("hwloc refused the I/O type filter", e))?
            .build()
            .map_err(|e| hwloc_error("hwloc could not discover the machine", e))?;
        let mut model = Self::from_hwloc(&topology)?;
        // sysfs adds what hwloc does not report: GPU memory, and locality hwloc left open.
        if let Ok(gpus) = sysfs_gpus(Path::new("/sys"), Path::new("/proc")) {
            model.merge_sysfs(&gpus);
        }
        Ok((model, topology))
    }

    /// Completes the GPUs from a sysfs scan ([`sysfs_gpus`]): memory sizes, and the local node
    /// of a GPU whose node is unknown when sysfs names one (by `numa_node`, or a
    /// `local_cpulist` within one node). A GPU sysfs lists that the model lacks is added.
    pub fn merge_sysfs(&mut self, found: &[SysfsGpu]) {
        for g in found {
            let node = g
                .numa_node
                .and_then(|os| self.nodes.iter().position(|n| n.os_index == os))
                .or_else(|| {
                    let first = g.local_cpus.first()?;
                    let i = self.nodes.iter().position(|n| n.cpus.contains(first))?;
                    g.local_cpus
                        .iter()
                        .all(|c| self.nodes[i].cpus.contains(c))
                        .then_some(i)
                });
            match self
                .gpus
                .iter_mut()
                .find(|d| d.pci_address == g.pci_address)
            {
                Some(d) => {
                    if g.memory_bytes > 0 {
                        d.memory_bytes = g.memory_bytes;
                    }
                    if d.node.is_none() {
                        d.node = node;
                    }
                }
                None => self.gpus.push(GpuDevice {
                    pci_address: g.pci_address.clone(),
                    vendor_id: g.vendor_id,
                    device_id: g.device_id,
                    node,
                    memory_bytes: g.memory_bytes,
                }),
            }
        }
        self.gpus.sort_by(|a, b| a.pci_address.cmp(&b.pci_address));
    }

    /// Records the memory a probed GPU backend reports for the GPU at `pci_address` where
    /// sysfs did not say; returns whether such a GPU is in the model.
    pub fn set_gpu_memory(&mut self, pci_address: &str, memory_bytes: u64) -> bool {
        match self.gpus.iter_mut().find(|g| g.pci_address == pci_address) {
            Some(g) => {
                if g.memory_bytes == 0 {
                    g.memory_bytes = memory_bytes;
                }
                true
            }
            None => false,
        }
    }

    /// The model restricted to the NUMA nodes with these operating-system indices (the
    /// `bind` policy): other nodes get no pool; GPUs local to them are driven from the first
    /// node kept, and the reason is theirs to read in each placement record.
    ///
    /// # Errors
    /// [`SchedulerError::InvalidConfig`] if an index names no node of the machine.
    pub fn restricted_to(&self, os_indices: &[usize]) -> Result<Self, SchedulerError> {
        if let Some(missing) = os_indices
            .iter()
            .find(|os| !self.nodes.iter().any(|n| n.os_index == **os))
        {
            return Err(SchedulerError::InvalidConfig {
                field: "numa_nodes",
                reason: format!(
                    "names node {missing}, but this machine has nodes {:?}; list existing nodes",
                    self.nodes.iter().map(|n| n.os_index).collect::<Vec<_>>()
                ),
            });
        }
        let kept: Vec<usize> = (0..self.nodes.len())
            .filter(|i| os_indices.contains(&self.nodes[*i].os_index))
            .collect();
        let nodes = kept.iter().map(|i| self.nodes[*i].clone()).collect();
        let gpus = self
            .gpus
            .iter()
            .map(|g| GpuDevice {
                node: g
                    .node
                    .map(|n| kept.iter().position(|k| *k == n).unwrap_or(0)),
                ..g.clone()
            })
            .collect();
        Ok(Self { nodes, gpus })
    }

    /// Loads an hwloc synthetic description such as `"pack:2 numa:1 core:16 pu:1"` (no I/O
    /// devices).
    ///
    /// # Errors
    /// [`SchedulerError::Topology`] if hwloc rejects the description.
    pub fn from_synthetic(
        description: &str,
    ) -> Result<(Self, hwlocality::Topology), SchedulerError> {
        let topology = hwlocality::Topology::builder()
            .from_synthetic(description)
            .map_err(|e| hwloc_error("invalid synthetic topology", e))?
            .build()
            .map_err(|e| hwloc_error("hwloc could not build the synthetic topology", e))?;
        Ok((Self::from_hwloc(&topology)?, topology))
    }

    /// Loads an hwloc XML export (as `lstopo topo.xml` writes it), PCI devices included.
    ///
    /// # Errors
    /// [`SchedulerError::Topology`] if hwloc rejects the XML.
    pub fn from_xml(xml: &str) -> Result<(Self, hwlocality::Topology), SchedulerError> {
        let topology = hwlocality::Topology::builder()
            .from_xml(xml)
            .map_err(|e| hwloc_error("invalid topology XML", e))?
            .with_io_type_filter(TypeFilter::KeepImportant)
            .map_err(|e| hwloc_error("hwloc refused the I/O type filter", e))?
            .build()
            .map_err(|e| hwloc_error("hwloc could not build the topology from XML", e))?;
        Ok((Self::from_hwloc(&topology)?, topology))
    }

    /// As [`from_xml`](Self::from_xml), reading the XML from `path`.
    ///
    /// # Errors
    /// [`SchedulerError::Topology`] if the file cannot be read or hwloc rejects it.
    pub fn from_xml_file(
        path: impl AsRef<Path>,
    ) -> Result<(Self, hwlocality::Topology), SchedulerError> {
        let path = path.as_ref();
        let xml = std::fs::read_to_string(path).map_err(|e| SchedulerError::Topology {
            message: format!("cannot read topology XML {}: {e}", path.display()),
        })?;
        Self::from_xml(&xml)
    }

    /// The plain-data model of an hwloc topology.
    ///
    /// # Errors
    /// [`SchedulerError::Topology`] if the topology has no NUMA node.
    pub fn from_hwloc(topology: &hwlocality::Topology) -> Result<Self, SchedulerError> {
        let mut nodes: Vec<NumaNode> = topology
            .objects_with_type(ObjectType::NUMANode)
            .map(|node| NumaNode {
                os_index: node.os_index().unwrap_or(node.logical_index()),
                cpus: node
                    .cpuset()
                    .map(|set| set.iter_set().map(usize::from).collect())
                    .unwrap_or_default(),
                memory_bytes: match node.attributes() {
                    Some(ObjectAttributes::NUMANode(attr)) => {
                        attr.local_memory().map_or(0, |m| m.get())
                    }
                    _ => 0,
                },
            })
            .collect();
        if nodes.is_empty() {
            return Err(SchedulerError::Topology {
                message: "hwloc reports no NUMA node".into(),
            });
        }
        nodes.sort_by_key(|n| n.os_index);
        let mut gpus: Vec<GpuDevice> = topology
            .pci_devices()
            .filter_map(|dev| match dev.attributes() {
                Some(ObjectAttributes::PCIDevice(pci)) if is_gpu_class(pci.class_id()) => {
                    Some(GpuDevice {
                        pci_address: format!(
                            "{:04x}:{:02x}:{:02x}.{:x}",
                            pci.domain(),
                            pci.bus_id(),
                            pci.bus_device(),
                            pci.function()
                        ),
                        vendor_id: pci.vendor_id(),
                        device_id: pci.device_id(),
                        node: local_node(dev, &nodes),
                        memory_bytes: 0,
                    })
                }
                _ => None,
            })
            .collect();
        gpus.sort_by(|a, b| a.pci_address.cmp(&b.pci_address));
        Ok(Self { nodes, gpus })
    }

    /// Total processing units.
    pub fn cpu_count(&self) -> usize {
        self.nodes.iter().map(|n| n.cpus.len()).sum()
    }

    /// Indices of the GPUs local to node `node` (not those of unknown locality).
    pub fn gpus_on(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        self.gpus
            .iter()
            .enumerate()
            .filter(move |(_, g)| g.node == Some(node))
            .map(|(i, _)| i)
    }

    /// Checks the model: at least one node, every node with a processing unit, every GPU's
    /// node in range.
    ///
    /// # Errors
    /// [`SchedulerError::InvalidConfig`] naming what is wrong.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        let bad = |reason: String| SchedulerError::InvalidConfig {
            field: "topology",
            reason,
        };
        if self.nodes.is_empty() {
            return Err(bad("has no NUMA node; give at least one".into()));
        }
        if let Some(n) = self.nodes.iter().find(|n| n.cpus.is_empty()) {
            return Err(bad(format!(
                "node {} has no processing unit; leave memory-only nodes out",
                n.os_index
            )));
        }
        if let Some(g) = self
            .gpus
            .iter()
            .find(|g| g.node.is_some_and(|n| n >= self.nodes.len()))
        {
            return Err(bad(format!(
                "GPU {} names a node past the {} nodes",
                g.pci_address,
                self.nodes.len()
            )));
        }
        Ok(())
    }
}

/// A GPU as sysfs describes it (see [`sysfs_gpus`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsGpu {
    /// PCI address, `domain:bus:device.function` in hex (the sysfs directory name).
    pub pci_address: String,
    /// PCI vendor id.
    pub vendor_id: u16,
    /// PCI device id.
    pub device_id: u16,
    /// The operating-system index of the device's NUMA node; `None` for `-1` or no file.
    pub numa_node: Option<usize>,
    /// The processing units local to the device (`local_cpulist`), ascending.
    pub local_cpus: Vec<usize>,
    /// Device memory in bytes; 0 if the driver does not say.
    pub memory_bytes: u64,
}

/// The display and 3D controllers under `sys_root/bus/pci/devices` with their locality and
/// memory: `numa_node`, `local_cpulist`, and memory from the amdgpu driver's
/// `mem_info_vram_total` or the NVIDIA driver's `proc_root/driver/nvidia/gpus/ADDR/information`
/// (a `... Memory: N MiB`-style line, when present). Unreadable or malformed optional files
/// leave their field unknown; devices are in PCI address order.
///
/// # Errors
/// [`SchedulerError::Topology`] only if the PCI device directory cannot be listed.
pub fn sysfs_gpus(sys_root: &Path, proc_root: &Path) -> Result<Vec<SysfsGpu>, SchedulerError> {
    let dir = sys_root.join("bus/pci/devices");
    let entries = std::fs::read_dir(&dir).map_err(|e| SchedulerError::Topology {
        message: format!("cannot list {}: {e}", dir.display()),
    })?;
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    let hex = |text: Option<String>| -> Option<u32> {
        let t = text?;
        u32::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok()
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(class) = hex(read(path.join("class"))) else {
            continue;
        };
        if !is_gpu_class((class >> 8) as u16) {
            continue;
        }
        let pci_address = entry.file_name().to_string_lossy().into_owned();
        let numa_node = read(path.join("numa_node"))
            .and_then(|t| parse_sysfs_numa_node(&t).ok())
            .flatten();
        let local_cpus = read(path.join("local_cpulist"))
            .and_then(|t| parse_cpulist(&t))
            .unwrap_or_default();
        let memory_bytes = read(path.join("mem_info_vram_total"))
            .and_then(|t| t.trim().parse::<u64>().ok())
            .or_else(|| {
                read(
                    proc_root
                        .join("driver/nvidia/gpus")
                        .join(&pci_address)
                        .join("information"),
                )
                .and_then(|t| nvidia_memory(&t))
            })
            .unwrap_or(0);
        out.push(SysfsGpu {
            vendor_id: hex(read(path.join("vendor"))).map_or(0, |v| v as u16),
            device_id: hex(read(path.join("device"))).map_or(0, |v| v as u16),
            pci_address,
            numa_node,
            local_cpus,
            memory_bytes,
        });
    }
    out.sort_by(|a, b| a.pci_address.cmp(&b.pci_address));
    Ok(out)
}

/// Parses a sysfs CPU list such as `0-3,8,10-11`; `None` if malformed (an empty list is
/// empty). Ranges are capped at 65536 processing units, so a hostile file cannot make it
/// allocate without bound.
pub fn parse_cpulist(text: &str) -> Option<Vec<usize>> {
    const MAX_CPUS: usize = 1 << 16;
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let c = part.trim().parse::<usize>().ok()?;
                (c, c)
            }
        };
        if lo > hi || hi >= MAX_CPUS || cpus.len() + (hi - lo) >= MAX_CPUS {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// The memory an NVIDIA driver's `information` file states, if it has a line like
/// `Video Memory: 81920 MiB` or `FB Memory: 80 GiB`.
fn nvidia_memory(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if !key.to_ascii_lowercase().contains("memory") {
            return None;
        }
        let mut words = value.split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        let shift = match words.next()?.to_ascii_lowercase().as_str() {
            "kib" | "kb" => 10,
            "mib" | "mb" => 20,
            "gib" | "gb" => 30,
            _ => return None,
        };
        n.checked_mul(1 << shift)
    })
}

/// The index into `nodes` of the single node an I/O device is local to, if there is one.
fn local_node(dev: &TopologyObject, nodes: &[NumaNode]) -> Option<usize> {
    let set = dev.first_non_io_ancestor()?.nodeset()?;
    if set.weight() != Some(1) {
        // Attached above several nodes (or the platform does not say): any node will do.
        return None;
    }
    let os = usize::from(set.first_set()?);
    nodes.iter().position(|n| n.os_index == os)
}

/// Binds the calling thread to NUMA nodes through hwloc.
#[derive(Debug)]
pub struct Binder {
    topology: Option<Arc<hwlocality::Topology>>,
}

impl Binder {
    /// A binder over an hwloc topology of this machine.
    pub fn new(topology: Arc<hwlocality::Topology>) -> Self {
        Self {
            topology: Some(topology),
        }
    }

    /// A binder that binds nothing (for synthetic topologies and hosts without hwloc).
    pub fn disabled() -> Self {
        Self { topology: None }
    }

    /// Pins the calling thread to the processing units `cpus` of node `node_os_index` and
    /// binds the memory it allocates to that node, so that its first touch lands there.
    ///
    /// # Errors
    /// A description of what the host refused; callers treat it as a warning.
    pub fn bind_current_thread(&self, node_os_index: usize, cpus: &[usize]) -> Result<(), String> {
        let Some(topology) = &self.topology else {
            return Ok(());
        };
        let mut cpuset = CpuSet::new();
        for &cpu in cpus {
            cpuset.set(cpu);
        }
        topology
            .bind_cpu(&cpuset, CpuBindingFlags::THREAD)
            .map_err(|e| {
                format!("cannot pin a thread to the cores of node {node_os_index}: {e}")
            })?;
        let mut nodeset = NodeSet::new();
        nodeset.set(node_os_index);
        topology
            .bind_memory(
                &nodeset,
                MemoryBindingPolicy::Bind,
                MemoryBindingFlags::THREAD,
            )
            .map_err(|e| format!("cannot bind a thread's memory to node {node_os_index}: {e}"))
    }
}
