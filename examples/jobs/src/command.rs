//! What a client sends and what it gets back, as bytes.
//!
//! The format is the application's own: Chronon replicates opaque bytes and never looks
//! inside. Each message is a tag byte and then its fields in order, integers little-endian and
//! byte strings with a u32 length prefix. Decoding takes untrusted bytes (anything a client
//! sends reaches `apply` on every replica), so it checks every length, refuses unknown tags and
//! trailing bytes, and never panics.

use chronon_engine::app::EffectId;
use chronon_engine::app::codec::{Reader, put_bytes, put_u64};

use crate::codec::{put_effect_id, put_string, read_effect_id, read_string};
use crate::job::{Job, JobId, Stage, put_job, put_job_id, read_job, read_job_id};

/// A job-queue command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobCommand {
    /// Adds a job that POSTs `payload` to `url`: at once, or once consensus time has advanced
    /// `run_at_delay_ns` past this command's.
    Submit {
        name: String,
        url: String,
        payload: Vec<u8>,
        run_at_delay_ns: Option<u64>,
    },
    /// Cancels a job that has not started (one still waiting for its delay).
    Cancel { job: JobId },
    /// One job's details.
    Status { job: JobId },
    /// Every job's number, name and stage, in job order.
    List,
}

/// One line of a [`JobReply::List`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSummary {
    pub job: JobId,
    pub name: String,
    pub stage: Stage,
}

/// A job-queue reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobReply {
    /// The new job's number, and the id of the effect its submission recorded: the timer of a
    /// delayed job, the HTTP request of an immediate one.
    Submitted {
        job: JobId,
        effect: EffectId,
    },
    Cancelled {
        job: JobId,
    },
    Status {
        job: JobId,
        details: Job,
    },
    List(Vec<JobSummary>),
}

// Command tags; each reply reuses its command's tag.
const SUBMIT: u8 = 1;
const CANCEL: u8 = 2;
const STATUS: u8 = 3;
const LIST: u8 = 4;

impl JobCommand {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            JobCommand::Submit {
                name,
                url,
                payload,
                run_at_delay_ns,
            } => {
                out.push(SUBMIT);
                put_string(&mut out, name);
                put_string(&mut out, url);
                put_bytes(&mut out, payload);
                match run_at_delay_ns {
                    None => out.push(0),
                    Some(delay_ns) => {
                        out.push(1);
                        put_u64(&mut out, *delay_ns);
                    }
                }
            }
            JobCommand::Cancel { job } => {
                out.push(CANCEL);
                put_job_id(&mut out, *job);
            }
            JobCommand::Status { job } => {
                out.push(STATUS);
                put_job_id(&mut out, *job);
            }
            JobCommand::List => out.push(LIST),
        }
        out
    }

    /// Decodes a command; `None` for anything malformed. Never panics.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<JobCommand> {
        let mut r = Reader::new(bytes);
        let command = match r.u8()? {
            SUBMIT => JobCommand::Submit {
                name: read_string(&mut r)?,
                url: read_string(&mut r)?,
                payload: r.bytes()?.to_vec(),
                run_at_delay_ns: match r.u8()? {
                    0 => None,
                    1 => Some(r.u64()?),
                    _ => return None,
                },
            },
            CANCEL => JobCommand::Cancel {
                job: read_job_id(&mut r)?,
            },
            STATUS => JobCommand::Status {
                job: read_job_id(&mut r)?,
            },
            LIST => JobCommand::List,
            _ => return None,
        };
        r.is_empty().then_some(command)
    }
}

impl JobReply {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            JobReply::Submitted { job, effect } => {
                out.push(SUBMIT);
                put_job_id(&mut out, *job);
                put_effect_id(&mut out, *effect);
            }
            JobReply::Cancelled { job } => {
                out.push(CANCEL);
                put_job_id(&mut out, *job);
            }
            JobReply::Status { job, details } => {
                out.push(STATUS);
                put_job_id(&mut out, *job);
                put_job(&mut out, details);
            }
            JobReply::List(jobs) => {
                out.push(LIST);
                put_u64(&mut out, jobs.len() as u64);
                for summary in jobs {
                    put_job_id(&mut out, summary.job);
                    put_string(&mut out, &summary.name);
                    out.push(summary.stage.tag());
                }
            }
        }
        out
    }

    /// Decodes a reply; `None` for anything malformed. Never panics.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<JobReply> {
        let mut r = Reader::new(bytes);
        let reply = match r.u8()? {
            SUBMIT => JobReply::Submitted {
                job: read_job_id(&mut r)?,
                effect: read_effect_id(&mut r)?,
            },
            CANCEL => JobReply::Cancelled {
                job: read_job_id(&mut r)?,
            },
            STATUS => JobReply::Status {
                job: read_job_id(&mut r)?,
                details: read_job(&mut r)?,
            },
            LIST => {
                // No capacity from the count: it is untrusted, and each entry must be read
                // from the bytes that are really there.
                let count = r.u64()?;
                let mut jobs = Vec::new();
                for _ in 0..count {
                    jobs.push(JobSummary {
                        job: read_job_id(&mut r)?,
                        name: read_string(&mut r)?,
                        stage: Stage::from_tag(r.u8()?)?,
                    });
                }
                JobReply::List(jobs)
            }
            _ => return None,
        };
        r.is_empty().then_some(reply)
    }
}

#[cfg(test)]
mod tests {
    use chronon_engine::app::EffectId;
    use chronon_engine::{Op, ShardId, Timestamp};

    use super::*;
    use crate::job::Phase;

    fn id(op: u64, ordinal: u32) -> EffectId {
        EffectId {
            shard: ShardId(3),
            op: Op(op),
            ordinal,
        }
    }

    fn job(phase: Phase) -> Job {
        Job {
            name: "report".to_owned(),
            url: "http://hooks.example/run".to_owned(),
            payload: b"{\"week\":7}".to_vec(),
            submitted_at: Timestamp(5),
            phase,
        }
    }

    /// Asserts `bytes` decodes to `expected` and that no prefix of it, and no longer input,
    /// decodes at all.
    fn assert_exact<T: PartialEq + std::fmt::Debug>(
        bytes: &[u8],
        expected: &T,
        decode: fn(&[u8]) -> Option<T>,
    ) {
        assert_eq!(decode(bytes).as_ref(), Some(expected));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "{expected:?} cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), None, "{expected:?} with a trailing byte");
    }

    // Every command and reply survives encode/decode; every truncation, every trailing byte
    // and a spread of random junk is refused without a panic.
    #[test]
    fn commands_and_replies_roundtrip_and_refuse_junk() {
        let commands = [
            JobCommand::Submit {
                name: "now".to_owned(),
                url: "http://a/b".to_owned(),
                payload: vec![],
                run_at_delay_ns: None,
            },
            JobCommand::Submit {
                name: String::new(),
                url: "http://a/b".to_owned(),
                payload: vec![0, 255],
                run_at_delay_ns: Some(u64::MAX),
            },
            JobCommand::Cancel { job: JobId(1) },
            JobCommand::Status {
                job: JobId(u64::MAX),
            },
            JobCommand::List,
        ];
        for command in &commands {
            assert_exact(&command.encode(), command, JobCommand::decode);
        }
        let phases = [
            Phase::Scheduled {
                at: Timestamp(9),
                timer: id(2, 0),
            },
            Phase::Running {
                effect: id(3, 1),
                since: Timestamp(10),
            },
            Phase::Done {
                effect: id(3, 1),
                response: b"ok".to_vec(),
                at: Timestamp(11),
            },
            Phase::Failed {
                effect: id(3, 1),
                error: "503".to_owned(),
                at: Timestamp(12),
            },
            Phase::Cancelled { at: Timestamp(13) },
        ];
        let mut replies = vec![
            JobReply::Submitted {
                job: JobId(4),
                effect: id(8, 2),
            },
            JobReply::Cancelled { job: JobId(4) },
            JobReply::List(vec![]),
            JobReply::List(vec![
                JobSummary {
                    job: JobId(1),
                    name: "a".to_owned(),
                    stage: Stage::Done,
                },
                JobSummary {
                    job: JobId(2),
                    name: "b".to_owned(),
                    stage: Stage::Cancelled,
                },
            ]),
        ];
        for phase in phases {
            replies.push(JobReply::Status {
                job: JobId(7),
                details: job(phase),
            });
        }
        for reply in &replies {
            assert_exact(&reply.encode(), reply, JobReply::decode);
        }
        // Flag and stage bytes outside their range are malformed, not "some".
        assert_eq!(JobCommand::decode(&[LIST + 1]), None);
        let mut bad_flag = commands[0].encode();
        *bad_flag.last_mut().expect("non-empty") = 2;
        assert_eq!(JobCommand::decode(&bad_flag), None);
        // A count far beyond the bytes present fails fast instead of allocating.
        let mut huge = vec![LIST];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(JobReply::decode(&huge), None);
        // Junk: a tiny deterministic generator, so a failure reproduces.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut junk: Vec<u8> = x.to_le_bytes()[..(x % 9) as usize].to_vec();
            // Mostly valid tags, so the fields behind them get exercised too.
            if let Some(tag) = junk.first_mut() {
                *tag %= 6;
            }
            let _ = JobCommand::decode(&junk);
            let _ = JobReply::decode(&junk);
        }
    }
}
