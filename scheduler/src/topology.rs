//! The hardware topology: NUMA nodes with their cores and memory, and the GPUs with the node
//! each one hangs off.
//!
//! [`Topology`] is plain data, so placement is tested on any shape of machine. It is built
//! from hwloc ([`Topology::discover`] on this machine, [`Topology::from_synthetic`] or
//! [`Topology::from_xml`] in tests) or by hand. [`Binder`] pins threads to a node's cores and
//! binds their memory to the node through hwloc; a binding that the host refuses (a container
//! with a restricted cpuset, for example) becomes a warning, never a failure.

use std::path::Path;
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
        Ok((Self::from_hwloc(&topology)?, topology))
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
