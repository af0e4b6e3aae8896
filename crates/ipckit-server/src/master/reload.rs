//! HUP: the master re-reads its config file, starts a new generation of workers beside the
//! running one, and retires the old generation (QUIT) once every new worker has published its
//! pid on the status board; a generation that does not come up within [`RELOAD_WAIT`] is
//! killed and the old one kept.

use super::child::Worker;
use super::listeners::Listeners;
use super::log::Log;
use super::{Master, Phase, Reload, RELOAD_WAIT};
use crate::config::Config;
use ipckit::signal::Signal;
use std::time::Instant;

impl Master {
    /// HUP: a new config (or the same one), a new generation, the old one retired once the
    /// new one is up.
    pub(super) fn start_reload(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        if self.reload.is_some() {
            self.log.line("reload already in progress: ignored");
            return;
        }
        let mut new = match &self.config_path {
            Some(p) => match Config::load(p) {
                Ok(c) => c,
                Err(e) => {
                    self.log
                        .line(&format!("reload failed, keeping the running config: {e}"));
                    return;
                }
            },
            None => self.config.clone(),
        };
        self.overrides.apply(&mut new);
        if let Err(e) = new.check() {
            self.log
                .line(&format!("reload failed, keeping the running config: {e}"));
            return;
        }
        if new.accept != self.config.accept {
            self.log.line(&format!(
                "reload failed, keeping the running config: changing accept from {} to {} needs a restart",
                self.config.accept, new.accept
            ));
            return;
        }
        let free = self.board.slots() - self.workers.len();
        if new.workers > free {
            self.log.line(&format!(
                "reload failed, keeping the running config: {} workers do not fit beside the {} running",
                new.workers,
                self.workers.len()
            ));
            return;
        }
        let listeners = match Listeners::build(&new, Some(&self.listeners)) {
            Ok(l) => l,
            Err(e) => {
                self.log
                    .line(&format!("reload failed, keeping the running config: {e}"));
                return;
            }
        };
        if new.error_log != self.config.error_log {
            match Log::open(new.error_log.clone()) {
                Ok(l) => {
                    self.log.line("switching to the new error log");
                    self.log = l;
                }
                Err(e) => self.log.line(&format!("keeping the error log: {e}")),
            }
        }
        // Replacements still waiting are moot: the new generation has every index.
        self.respawns.clear();
        let old_listeners = std::mem::replace(&mut self.listeners, listeners);
        let old_config = std::mem::replace(&mut self.config, new);
        let old_generation = self.generation;
        // Never reuse a number, even one a failed reload took.
        self.last_generation += 1;
        self.generation = self.last_generation;
        self.reload = Some(Reload {
            old_generation,
            old_config,
            old_listeners,
            deadline: Instant::now() + RELOAD_WAIT,
        });
        let generation = self.generation;
        for idx in 0..self.config.workers {
            let Some(slot) = self.free_slot() else {
                break;
            };
            if let Err(e) = self.spawn(idx, slot, generation) {
                self.log
                    .line(&format!("starting generation {generation}: {e}"));
                self.abort_reload();
                return;
            }
        }
        self.write_state();
    }

    fn free_slot(&self) -> Option<usize> {
        let used: Vec<usize> = self.workers.values().map(|w| w.slot).collect();
        let pending: Vec<usize> = self.respawns.iter().map(|r| r.slot).collect();
        (0..self.board.slots()).find(|s| !used.contains(s) && !pending.contains(s))
    }

    /// True when every worker of the current generation has published its pid.
    pub(super) fn generation_up(&self) -> bool {
        let snap = self.board.snapshot();
        let current: Vec<&Worker> = self
            .workers
            .values()
            .filter(|w| w.generation == self.generation)
            .collect();
        current.len() == self.config.workers
            && current.iter().all(|w| {
                snap.get(w.slot).is_some_and(|s| {
                    s.pid == u64::from(w.child.id()) && s.generation == w.generation
                })
            })
    }

    pub(super) fn abort_reload(&mut self) {
        let Some(r) = self.reload.take() else {
            return;
        };
        let failed = self.generation;
        self.log.line(&format!(
            "generation {failed} did not come up; keeping generation {}",
            r.old_generation
        ));
        self.signal_workers(Signal::SIGKILL, |w| w.generation == failed);
        for w in self.workers.values_mut() {
            if w.generation == failed {
                w.quit_at = Some(Instant::now());
                w.killed = true;
            }
        }
        self.respawns.clear();
        self.config = r.old_config;
        self.generation = r.old_generation;
        let failed_listeners = std::mem::replace(&mut self.listeners, r.old_listeners);
        self.retired_listeners.push((failed, failed_listeners));
        self.fill_generation();
        self.write_state();
    }

    /// Starts a worker for every index of the current generation that has none (one that
    /// died while a reload was pending, whose replacement was dropped with the reload).
    fn fill_generation(&mut self) {
        let generation = self.generation;
        for idx in 0..self.config.workers {
            let present = self
                .workers
                .values()
                .any(|w| w.generation == generation && w.idx == idx && w.quit_at.is_none());
            if present {
                continue;
            }
            let Some(slot) = self.free_slot() else {
                break;
            };
            match self.spawn(idx, slot, generation) {
                Ok(pid) => self.log.line(&format!(
                    "started worker {pid} (slot {slot}) for a missing one of generation {generation}"
                )),
                Err(e) => self.log.line(&format!("starting a worker: {e}")),
            }
        }
    }

    pub(super) fn finish_reload(&mut self) {
        let Some(r) = self.reload.take() else {
            return;
        };
        let generation = self.generation;
        let now = Instant::now();
        let mut retired = Vec::new();
        for w in self.workers.values_mut() {
            if w.generation < generation && w.quit_at.is_none() {
                w.quit_at = Some(now);
                retired.push(w.child.id());
            }
        }
        // The respawns of older generations are moot now.
        self.respawns.retain(|_| false);
        self.signal_workers(Signal::SIGQUIT, |w| w.generation < generation);
        self.retired_listeners
            .push((r.old_generation, r.old_listeners));
        let addrs: Vec<String> = self
            .listeners
            .local_addrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        self.log.line(&format!(
            "generation {generation} is up ({} workers on {}); retiring generation {} (pids {:?})",
            self.config.workers,
            addrs.join(", "),
            r.old_generation,
            retired
        ));
        self.write_state();
    }
}
