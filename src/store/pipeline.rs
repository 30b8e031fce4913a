//! An ordered worker pool for whole-file streams: items produced in order on the
//! caller's thread are handed round-robin to a few worker threads (hashing,
//! reading and checking blocks) and their results come back to the caller in
//! the order the items were produced. Memory stays bounded: at most
//! `workers * queue` items are in flight.
//!
//! Round-robin keeps it simple and deadlock-free: consecutive items in flight
//! spread evenly, so no worker ever holds more than `queue` of them, which is
//! what each of its channels can take without blocking the caller.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// How many workers a stream uses: the cores there are, at most four.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// Runs `work` over the items `produce` yields (until it yields `None`) on
/// `workers` threads and feeds each result to `consume`, in production order.
/// The first error (from any of the three) stops the stream and is returned.
pub fn run_ordered<I, O, E>(
    workers: usize,
    queue: usize,
    mut produce: impl FnMut() -> Result<Option<I>, E>,
    work: impl Fn(I) -> Result<O, E> + Sync,
    mut consume: impl FnMut(O) -> Result<(), E>,
) -> Result<(), E>
where
    I: Send,
    O: Send,
    E: Send,
{
    let workers = workers.max(1);
    let queue = queue.max(1);
    let work = &work;
    std::thread::scope(|scope| {
        let mut inputs: Vec<SyncSender<I>> = Vec::with_capacity(workers);
        let mut outputs: Vec<Receiver<Result<O, E>>> = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (to_worker, from_caller) = sync_channel::<I>(queue);
            let (to_caller, from_worker) = sync_channel::<Result<O, E>>(queue);
            scope.spawn(move || {
                for item in from_caller {
                    if to_caller.send(work(item)).is_err() {
                        return; // the caller stopped
                    }
                }
            });
            inputs.push(to_worker);
            outputs.push(from_worker);
        }
        // Which worker holds each item in flight, oldest first.
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        let mut take_oldest = |in_flight: &mut VecDeque<usize>| -> Result<(), E> {
            let Some(worker) = in_flight.pop_front() else {
                return Ok(());
            };
            match outputs[worker].recv() {
                Ok(result) => consume(result?),
                // A worker only stops early when its channel is gone: cannot happen
                // while we hold the sender, so treat it as the end of the stream.
                Err(_) => Ok(()),
            }
        };
        let mut next = 0usize;
        while let Some(item) = produce()? {
            if in_flight.len() >= workers * queue {
                take_oldest(&mut in_flight)?;
            }
            let worker = next % workers;
            next += 1;
            if inputs[worker].send(item).is_err() {
                break;
            }
            in_flight.push_back(worker);
        }
        drop(inputs);
        while !in_flight.is_empty() {
            take_oldest(&mut in_flight)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_from_many_workers() {
        let mut n = 0u32;
        let mut seen = Vec::new();
        run_ordered::<u32, u32, String>(
            3,
            2,
            || {
                n += 1;
                Ok((n <= 100).then_some(n))
            },
            |x| {
                // Uneven work, so workers finish out of order.
                std::thread::sleep(std::time::Duration::from_micros(u64::from(x % 7) * 50));
                Ok(x * 2)
            },
            |y| {
                seen.push(y);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (1..=100).map(|x| x * 2).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_error_stops_the_stream() {
        let mut n = 0u32;
        let mut consumed = 0;
        let result = run_ordered::<u32, u32, String>(
            2,
            1,
            || {
                n += 1;
                Ok(Some(n))
            },
            |x| {
                if x == 10 {
                    Err(format!("bad {x}"))
                } else {
                    Ok(x)
                }
            },
            |_| {
                consumed += 1;
                Ok(())
            },
        );
        assert_eq!(result, Err("bad 10".to_string()));
        assert_eq!(consumed, 9);
    }
}
