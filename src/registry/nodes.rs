//! One [`Node`] per node: Consul repeats a node in every entry of every service on it, and a
//! node (name, address, tagged addresses, meta) is the largest part of an entry, so entries
//! whose node data is equal share one `Arc<Node>`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use compact_str::CompactString;

use super::model::{HealthEntry, Node};

/// Node name -> the node entries last shared. Weak, so a node no entry holds any more is
/// freed (only a small dead slot remains until the next prune).
#[derive(Default)]
pub struct NodeInterner {
    nodes: HashMap<CompactString, Weak<Node>>,
    /// Size of `nodes` after the last prune; the next prune waits until it has doubled.
    pruned_len: usize,
}

impl NodeInterner {
    /// Points each entry's node at the node already known when its data is equal, remembers
    /// the others (a changed node replaces the remembered one), and trims spare capacity.
    pub fn share(&mut self, entries: &mut Vec<HealthEntry>) {
        entries.shrink_to_fit();
        for entry in entries.iter_mut() {
            let known = self.nodes.get(&entry.node.node).and_then(Weak::upgrade);
            match known {
                Some(known) if Arc::ptr_eq(&known, &entry.node) => {}
                Some(known) if *known == *entry.node => entry.node = known,
                _ => {
                    self.nodes
                        .insert(entry.node.node.clone(), Arc::downgrade(&entry.node));
                }
            }
        }
        if self.nodes.len() > 2 * self.pruned_len.max(1024) {
            self.nodes.retain(|_, node| node.strong_count() > 0);
            self.nodes.shrink_to_fit();
            self.pruned_len = self.nodes.len();
        }
    }
}

impl std::fmt::Debug for NodeInterner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The nodes themselves would flood a log line.
        f.debug_struct("NodeInterner")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{HealthEntry, Node, NodeInterner};

    fn entry(node: &str, address: &str) -> HealthEntry {
        HealthEntry {
            node: Arc::new(Node {
                node: node.into(),
                address: address.into(),
                ..Node::default()
            }),
            ..HealthEntry::default()
        }
    }

    #[test]
    fn equal_nodes_are_shared_and_a_changed_node_replaces_the_known_one() {
        let mut nodes = NodeInterner::default();
        let mut first = vec![entry("n1", "10.0.0.1"), entry("n2", "10.0.0.2")];
        nodes.share(&mut first);
        let mut second = vec![entry("n1", "10.0.0.1"), entry("n2", "10.0.0.9")];
        nodes.share(&mut second);
        assert!(Arc::ptr_eq(&first[0].node, &second[0].node));
        assert!(!Arc::ptr_eq(&first[1].node, &second[1].node));
        let mut third = vec![entry("n2", "10.0.0.9")];
        nodes.share(&mut third);
        assert!(Arc::ptr_eq(&second[1].node, &third[0].node));
    }
}
