//! The two directions of one relayed stream and PageKite's EOF flags (protocol
//! doc §4.3). `R` from a peer means "no more data is coming": finish writing
//! what is buffered, then shut our socket's write side. `W` means "I can't
//! deliver any more": stop reading our socket. The stream is finished when we
//! neither read nor write any more; the peer then gets `EOF: 1WR` unless it
//! already had both flags. Pure bookkeeping; the relay performs the actions.

use super::frame::Eof;

#[derive(Clone, Copy, Debug)]
pub struct Ends {
    reading: bool,
    writing: bool,
    shut_when_drained: bool,
    sent: Eof,
}

/// What the relay must do after the peer's EOF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PeerEofEffect {
    /// Stop reading the local socket.
    pub stop_reading: bool,
    /// Shut the local socket's write side once the stream's buffer is empty.
    pub shut_when_drained: bool,
}

impl Default for Ends {
    fn default() -> Self {
        Ends {
            reading: true,
            writing: true,
            shut_when_drained: false,
            sent: Eof::default(),
        }
    }
}

impl Ends {
    pub fn is_reading(&self) -> bool {
        self.reading
    }

    pub fn is_writing(&self) -> bool {
        self.writing
    }

    pub fn is_finished(&self) -> bool {
        !self.reading && !self.writing
    }

    /// Our socket returned EOF: tell the peer `R`.
    pub fn local_read_eof(&mut self) -> Option<Eof> {
        self.reading = false;
        self.send(Eof {
            read: true,
            write: false,
        })
    }

    /// Writing to our socket failed: tell the peer `W`, drop what's queued.
    pub fn local_write_failed(&mut self) -> Option<Eof> {
        self.writing = false;
        self.shut_when_drained = false;
        self.send(Eof {
            read: false,
            write: true,
        })
    }

    pub fn peer_eof(&mut self, eof: Eof) -> PeerEofEffect {
        let mut effect = PeerEofEffect::default();
        if eof.write && self.reading {
            self.reading = false;
            effect.stop_reading = true;
        }
        if eof.read && self.writing {
            self.shut_when_drained = true;
            effect.shut_when_drained = true;
        }
        effect
    }

    /// The stream's buffer towards our socket is empty: true if the write
    /// side should be shut now (it then counts as done).
    pub fn drained(&mut self) -> bool {
        if self.shut_when_drained && self.writing {
            self.writing = false;
            self.shut_when_drained = false;
            return true;
        }
        false
    }

    /// The flags to send when the stream goes away: `1WR` unless the peer
    /// already has both.
    pub fn final_eof(&mut self) -> Option<Eof> {
        self.reading = false;
        self.writing = false;
        self.send(Eof::BOTH)
    }

    fn send(&mut self, eof: Eof) -> Option<Eof> {
        let merged = Eof {
            read: self.sent.read || eof.read,
            write: self.sent.write || eof.write,
        };
        if merged == self.sent {
            return None;
        }
        self.sent = merged;
        Some(eof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Eof = Eof {
        read: true,
        write: false,
    };

    #[test]
    fn http_exchange_like_the_capture() {
        // Backend side: the origin answers and closes.
        let mut be = Ends::default();
        assert_eq!(be.local_read_eof(), Some(R));
        assert!(!be.is_finished());
        // Frontend side: gets R, drains to the client, shuts its write side.
        let mut fe = Ends::default();
        let effect = fe.peer_eof(R);
        assert_eq!(
            effect,
            PeerEofEffect {
                stop_reading: false,
                shut_when_drained: true
            }
        );
        assert!(fe.drained());
        assert!(!fe.drained());
        // The client closes too: R, then the stream is finished: 1WR.
        assert_eq!(fe.local_read_eof(), Some(R));
        assert!(fe.is_finished());
        assert_eq!(fe.final_eof(), Some(Eof::BOTH));
        assert_eq!(fe.final_eof(), None);
        // Backend gets 1WR: nothing left to read, drain and finish.
        let effect = be.peer_eof(Eof::BOTH);
        assert!(!effect.stop_reading && effect.shut_when_drained);
        assert!(be.drained());
        assert!(be.is_finished());
        assert_eq!(be.final_eof(), Some(Eof::BOTH));
    }

    #[test]
    fn peer_cannot_deliver_stops_reading() {
        let mut s = Ends::default();
        let w = Eof {
            read: false,
            write: true,
        };
        assert_eq!(
            s.peer_eof(w),
            PeerEofEffect {
                stop_reading: true,
                shut_when_drained: false
            }
        );
        assert!(!s.is_reading() && s.is_writing());
        assert_eq!(s.peer_eof(w), PeerEofEffect::default());
    }

    #[test]
    fn write_failure_reports_w_once() {
        let mut s = Ends::default();
        assert_eq!(
            s.local_write_failed(),
            Some(Eof {
                read: false,
                write: true
            })
        );
        assert_eq!(s.local_write_failed(), None);
        assert!(!s.drained());
        assert_eq!(s.local_read_eof(), Some(R));
        assert!(s.is_finished());
        assert_eq!(s.final_eof(), None, "the peer already has both flags");
    }
}
