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

/// Runs `work` over `items` on up to `workers` threads, the items split into
/// groups by `group` (one thread a group, each group's items in their order:
/// items of different groups must be independent), when there are at least
/// `min` of them; fewer run on this thread. Gives the results in group order;
/// the first error of any group (every group runs to its own end or error).
pub fn run_grouped<T, R, E>(
    items: &[T],
    workers: usize,
    min: usize,
    group: impl Fn(&T) -> usize,
    work: impl Fn(&[&T]) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let workers = workers.max(1);
    if workers == 1 || items.len() < min.max(2) {
        let all: Vec<&T> = items.iter().collect();
        return Ok(vec![work(&all)?]);
    }
    let mut groups: Vec<Vec<&T>> = (0..workers).map(|_| Vec::new()).collect();
    for item in items {
        groups[group(item) % workers].push(item);
    }
    let work = &work;
    let results: Vec<Result<R, E>> = std::thread::scope(|scope| {
        let running: Vec<_> = groups
            .iter()
            .map(|items| scope.spawn(move || work(items)))
            .collect();
        running
            .into_iter()
            .map(|thread| match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    results.into_iter().collect()
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

    #[test]
    fn grouped_work_keeps_each_group_on_one_thread_in_order_and_says_the_first_error() {
        let items: Vec<u32> = (0..100).collect();
        let seen = run_grouped::<_, _, String>(
            &items,
            3,
            10,
            |n| *n as usize,
            |group| {
                let thread = std::thread::current().id();
                Ok((thread, group.iter().map(|n| **n).collect::<Vec<u32>>()))
            },
        )
        .unwrap();
        assert_eq!(seen.len(), 3);
        for (at, (_, numbers)) in seen.iter().enumerate() {
            let expected: Vec<u32> = (0..100).filter(|n| *n as usize % 3 == at).collect();
            assert_eq!(numbers, &expected);
        }
        let threads: std::collections::HashSet<_> = seen.iter().map(|(t, _)| *t).collect();
        assert_eq!(threads.len(), 3, "each group ran on a thread of its own");
        // Below `min`: one group, on this thread.
        let few = run_grouped::<_, _, String>(
            &items[..5],
            3,
            10,
            |n| *n as usize,
            |group| Ok((std::thread::current().id(), group.len())),
        )
        .unwrap();
        assert_eq!(few, vec![(std::thread::current().id(), 5)]);
        let failed = run_grouped::<_, (), String>(
            &items,
            2,
            10,
            |n| *n as usize,
            |group| match group.iter().any(|n| **n == 51) {
                true => Err("51".to_string()),
                false => Ok(()),
            },
        );
        assert_eq!(failed, Err("51".to_string()));
    }
}
