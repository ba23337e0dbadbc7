//! The regex engine behind ACL patterns (see `acl.rs`): a parser for the
//! subset of Python's `re` syntax that IP patterns use, a compiler to a small
//! instruction list, and a Thompson-style simulation that runs every
//! alternative at once. It owns only pattern text and the address text it is
//! matched against; which rules apply and in what order is `acl.rs`'s job.
//! Work is bounded by pattern size times text length, whatever the pattern,
//! and every limit (length, nesting, counts, program size) is an error, not
//! a panic.

use super::AclError;

/// Longest pattern accepted; IP patterns are short, and this bounds the
/// parser's work and error messages.
pub(super) const MAX_PATTERN: usize = 1024;
/// Group nesting limit, so a hostile config can't exhaust the stack.
const MAX_DEPTH: usize = 32;
/// Largest `{m,n}` count: an address is at most 45 characters, so higher
/// counts add nothing but size.
const MAX_REPEAT: u32 = 64;
/// Largest compiled program; `{m,n}` copies its operand, so nesting them
/// could otherwise grow without bound.
const MAX_PROGRAM: usize = 8192;

/// A compiled pattern. Matching is anchored at the start (`re.match`), and
/// the last alternative is anchored at the end (the `$` pagekite.py adds).
#[derive(Clone, Debug)]
pub struct Regex {
    prog: Vec<Inst>,
}

#[derive(Clone, Debug)]
enum Inst {
    Char(char),
    /// `.`: anything but a newline.
    Any,
    Class(Class),
    /// `^`, `\A`: only at the start (no multiline mode).
    Start,
    /// `$`: at the end, or before a newline that ends the text.
    End,
    /// `\Z`: only at the very end.
    EndText,
    Split(usize, usize),
    Jmp(usize),
    Match,
}

#[derive(Clone, Debug)]
struct Class {
    negated: bool,
    items: Vec<Item>,
}

#[derive(Clone, Copy, Debug)]
enum Item {
    Range(char, char),
    /// `\d`, `\w`, `\s`; `true` for the negated `\D`, `\W`, `\S`.
    Digit(bool),
    Word(bool),
    Space(bool),
}

impl Item {
    fn matches(self, c: char) -> bool {
        match self {
            Item::Range(lo, hi) => lo <= c && c <= hi,
            Item::Digit(neg) => c.is_ascii_digit() != neg,
            Item::Word(neg) => (c.is_alphanumeric() || c == '_') != neg,
            Item::Space(neg) => c.is_whitespace() != neg,
        }
    }
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.items.iter().any(|i| i.matches(c)) != self.negated
    }

    fn single(item: Item) -> Class {
        Class {
            negated: false,
            items: vec![item],
        }
    }
}

/// The parsed pattern, before compiling.
#[derive(Clone, Debug)]
enum Node {
    Char(char),
    Any,
    Class(Class),
    Start,
    End,
    EndText,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

impl Node {
    fn is_anchor(&self) -> bool {
        matches!(self, Node::Start | Node::End | Node::EndText)
    }
}

impl Regex {
    /// Compiles `pattern` as `re.match(pattern + '$')` would use it.
    pub fn new(pattern: &str) -> Result<Regex, AclError> {
        let chars: Vec<char> = pattern.chars().collect();
        let fail = |pos: usize, problem: String| AclError::BadPattern {
            pattern: pattern.to_owned(),
            pos,
            problem,
        };
        if chars.len() > MAX_PATTERN {
            return Err(fail(
                MAX_PATTERN,
                format!("longer than {MAX_PATTERN} characters"),
            ));
        }
        let mut parser = Parser {
            chars: &chars,
            pos: 0,
            depth: 0,
        };
        let mut node = parser.alternation().map_err(|(p, e)| fail(p, e))?;
        if parser.peek().is_some() {
            // Only a `)` stops the top level early.
            return Err(fail(parser.pos, "unbalanced parenthesis".into()));
        }
        // pagekite.py appends `$` to the text, so it binds to the last
        // alternative only.
        match &mut node {
            Node::Alt(branches) => {
                if let Some(last) = branches.last_mut() {
                    let inner = std::mem::replace(last, Node::Concat(Vec::new()));
                    *last = Node::Concat(vec![inner, Node::End]);
                }
            }
            other => {
                let inner = std::mem::replace(other, Node::Concat(Vec::new()));
                *other = Node::Concat(vec![inner, Node::End]);
            }
        }
        let mut prog = Vec::new();
        compile(&node, &mut prog)
            .and_then(|()| emit(&mut prog, Inst::Match))
            .map_err(|()| fail(chars.len(), "pattern too complex".into()))?;
        Ok(Regex { prog })
    }

    /// Whether the pattern matches `text` from its start. All alternatives
    /// advance together, one character at a time, with at most one thread
    /// per instruction, so no pattern can take exponential time.
    pub fn is_match(&self, text: &str) -> bool {
        self.run(text).0
    }

    /// [`Regex::is_match`] and the work it did (threads stepped plus
    /// instructions visited), which the fuzz checks hold to the promised
    /// bound of a few steps per instruction per character.
    #[doc(hidden)]
    pub fn is_match_counting(&self, text: &str) -> (bool, usize) {
        self.run(text)
    }

    /// Instructions in the compiled program (at most `MAX_PROGRAM`).
    #[doc(hidden)]
    pub fn program_len(&self) -> usize {
        self.prog.len()
    }

    fn run(&self, text: &str) -> (bool, usize) {
        let mut steps = 0;
        let chars: Vec<char> = text.chars().collect();
        let n = self.prog.len();
        // The position a thread at each instruction was last added for.
        let mut seen = vec![usize::MAX; n];
        let mut now = Vec::with_capacity(n);
        let mut next = Vec::with_capacity(n);
        let mut stack = Vec::new();
        steps += self.add(&mut now, &mut seen, &mut stack, 0, 0, &chars);
        for pos in 0..=chars.len() {
            if now.is_empty() {
                return (false, steps);
            }
            let c = chars.get(pos).copied();
            for &pc in &now {
                steps += 1;
                let step = match (self.prog.get(pc), c) {
                    (Some(Inst::Match), _) => return (true, steps),
                    (Some(Inst::Char(want)), Some(c)) => *want == c,
                    (Some(Inst::Any), Some(c)) => c != '\n',
                    (Some(Inst::Class(class)), Some(c)) => class.matches(c),
                    _ => false,
                };
                if step {
                    steps += self.add(&mut next, &mut seen, &mut stack, pc + 1, pos + 1, &chars);
                }
            }
            std::mem::swap(&mut now, &mut next);
            next.clear();
        }
        (false, steps)
    }

    /// Adds the thread at `pc` to `list`, following jumps and checking
    /// anchors first, so the list holds only instructions that consume a
    /// character (or `Match`). Returns how many stack entries it popped.
    fn add(
        &self,
        list: &mut Vec<usize>,
        seen: &mut [usize],
        stack: &mut Vec<usize>,
        pc: usize,
        pos: usize,
        chars: &[char],
    ) -> usize {
        let mut popped = 0;
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            popped += 1;
            match seen.get_mut(pc) {
                Some(s) if *s != pos => *s = pos,
                _ => continue,
            }
            match self.prog.get(pc) {
                Some(Inst::Jmp(to)) => stack.push(*to),
                Some(Inst::Split(a, b)) => {
                    // Pushed in reverse so `a` is explored first; the order
                    // does not change whether the pattern matches.
                    stack.push(*b);
                    stack.push(*a);
                }
                Some(Inst::Start) if pos == 0 => stack.push(pc + 1),
                Some(Inst::End)
                    if pos == chars.len()
                        || (pos + 1 == chars.len() && chars.get(pos) == Some(&'\n')) =>
                {
                    stack.push(pc + 1)
                }
                Some(Inst::EndText) if pos == chars.len() => stack.push(pc + 1),
                Some(Inst::Start | Inst::End | Inst::EndText) | None => {}
                Some(_) => list.push(pc),
            }
        }
        popped
    }
}

fn emit(prog: &mut Vec<Inst>, inst: Inst) -> Result<(), ()> {
    if prog.len() >= MAX_PROGRAM {
        return Err(());
    }
    prog.push(inst);
    Ok(())
}

/// Sets the target of the `Split` or `Jmp` at `at`.
fn patch(prog: &mut [Inst], at: usize, second: usize) {
    match prog.get_mut(at) {
        Some(Inst::Split(_, b)) => *b = second,
        Some(Inst::Jmp(to)) => *to = second,
        _ => {}
    }
}

fn compile(node: &Node, prog: &mut Vec<Inst>) -> Result<(), ()> {
    match node {
        Node::Char(c) => emit(prog, Inst::Char(*c)),
        Node::Any => emit(prog, Inst::Any),
        Node::Class(class) => emit(prog, Inst::Class(class.clone())),
        Node::Start => emit(prog, Inst::Start),
        Node::End => emit(prog, Inst::End),
        Node::EndText => emit(prog, Inst::EndText),
        Node::Concat(nodes) => nodes.iter().try_for_each(|n| compile(n, prog)),
        Node::Alt(branches) => {
            let mut jumps = Vec::new();
            let count = branches.len();
            for (i, branch) in branches.iter().enumerate() {
                if i + 1 < count {
                    let split = prog.len();
                    emit(prog, Inst::Split(split + 1, 0))?;
                    compile(branch, prog)?;
                    jumps.push(prog.len());
                    emit(prog, Inst::Jmp(0))?;
                    let next = prog.len();
                    patch(prog, split, next);
                } else {
                    compile(branch, prog)?;
                }
            }
            let end = prog.len();
            for j in jumps {
                patch(prog, j, end);
            }
            Ok(())
        }
        Node::Repeat { node, min, max } => {
            for _ in 0..*min {
                compile(node, prog)?;
            }
            match max {
                None => {
                    // L: split(body, out); body; jmp L
                    let split = prog.len();
                    emit(prog, Inst::Split(split + 1, 0))?;
                    compile(node, prog)?;
                    emit(prog, Inst::Jmp(split))?;
                    let out = prog.len();
                    patch(prog, split, out);
                }
                Some(max) => {
                    // Each optional copy may be skipped to the very end.
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(prog.len());
                        emit(prog, Inst::Split(prog.len() + 1, 0))?;
                        compile(node, prog)?;
                    }
                    let out = prog.len();
                    for s in splits {
                        patch(prog, s, out);
                    }
                }
            }
            Ok(())
        }
    }
}

/// Recursive-descent parser; errors are (character position, problem).
struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
    depth: usize,
}

type Parsed<T> = Result<T, (usize, String)>;

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn alternation(&mut self) -> Parsed<Node> {
        let mut branches = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat()?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Concat(Vec::new()))
        } else {
            Node::Alt(branches)
        })
    }

    fn concat(&mut self) -> Parsed<Node> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(Node::Concat(items))
    }

    fn atom(&mut self) -> Parsed<Node> {
        let at = self.pos;
        let Some(c) = self.bump() else {
            return Err((at, "unexpected end of pattern".into()));
        };
        Ok(match c {
            '(' => {
                if self.peek() == Some('?') {
                    if self.peek_at(1) != Some(':') {
                        return Err((at, "only (?:...) groups are supported".into()));
                    }
                    self.pos += 2;
                }
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err((at, "too many nested groups".into()));
                }
                let inner = self.alternation()?;
                self.depth -= 1;
                if self.bump() != Some(')') {
                    return Err((at, "missing ), unterminated subpattern".into()));
                }
                inner
            }
            '[' => Node::Class(self.class(at)?),
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '\\' => match self.escape(at, false)? {
                Escaped::Char(c) => Node::Char(c),
                Escaped::Set(item) => Node::Class(Class::single(item)),
                Escaped::Start => Node::Start,
                Escaped::EndText => Node::EndText,
            },
            '*' | '+' | '?' => return Err((at, "nothing to repeat".into())),
            '{' if self.counted_at(at).is_some() => {
                return Err((at, "nothing to repeat".into()));
            }
            c => Node::Char(c),
        })
    }

    /// Applies the quantifier after `atom`, if any.
    fn quantified(&mut self, atom: Node) -> Parsed<Node> {
        let at = self.pos;
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => match self.counted_at(at) {
                Some((min, max, len)) => {
                    self.pos += len - 1;
                    if max.is_some_and(|max| min > max) {
                        return Err((at, "min repeat greater than max repeat".into()));
                    }
                    if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
                        return Err((at, format!("repeat count over {MAX_REPEAT}")));
                    }
                    (min, max)
                }
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        self.pos += 1;
        if atom.is_anchor() {
            return Err((at, "nothing to repeat".into()));
        }
        // A lazy `?` changes which match is found, not whether one is.
        if self.peek() == Some('?') {
            self.pos += 1;
        } else if self.peek() == Some('+') {
            return Err((self.pos, "possessive quantifiers are not supported".into()));
        }
        if matches!(self.peek(), Some('*' | '+' | '?'))
            || (self.peek() == Some('{') && self.counted_at(self.pos).is_some())
        {
            return Err((self.pos, "multiple repeat".into()));
        }
        Ok(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
        })
    }

    /// Reads `{m}`, `{m,}`, `{,n}`, `{m,n}` or `{,}` at `at` as Python does:
    /// (min, max, length), or `None` when the brace is a literal.
    fn counted_at(&self, at: usize) -> Option<(u32, Option<u32>, usize)> {
        let rest = self.chars.get(at..)?;
        if rest.first() != Some(&'{') {
            return None;
        }
        let close = rest.iter().position(|&c| c == '}')?;
        let inner: String = rest.get(1..close)?.iter().collect();
        let number = |s: &str| -> Option<Option<u32>> {
            if s.is_empty() {
                Some(None)
            } else if s.bytes().all(|b| b.is_ascii_digit()) {
                // Saturate: an absurd count is reported as too large.
                Some(Some(s.parse().unwrap_or(u32::MAX)))
            } else {
                None
            }
        };
        let (min, max) = match inner.split_once(',') {
            Some((lo, hi)) => (number(lo)?, number(hi)?),
            None => {
                let n = number(&inner)??;
                (Some(n), Some(n))
            }
        };
        Some((min.unwrap_or(0), max, close + 1))
    }

    /// A `[...]` set; `at` is the position of its `[`.
    fn class(&mut self, at: usize) -> Parsed<Class> {
        let unterminated = || (at, "unterminated character set".to_owned());
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let item_at = self.pos;
            let lo = match self.bump() {
                None => return Err(unterminated()),
                Some(']') if !first => break,
                Some('\\') => self.escape(item_at, true)?,
                Some(c) => Escaped::Char(c),
            };
            first = false;
            let is_range = self.peek() == Some('-') && !matches!(self.peek_at(1), Some(']') | None);
            if !is_range {
                items.push(match lo {
                    Escaped::Char(c) => Item::Range(c, c),
                    Escaped::Set(item) => item,
                    // escape() refuses anchors inside sets already.
                    Escaped::Start | Escaped::EndText => {
                        return Err((item_at, "bad escape in set".into()));
                    }
                });
                continue;
            }
            self.pos += 1;
            let hi_at = self.pos;
            let hi = match self.bump() {
                Some('\\') => self.escape(hi_at, true)?,
                Some(c) => Escaped::Char(c),
                None => return Err(unterminated()),
            };
            match (lo, hi) {
                (Escaped::Char(lo), Escaped::Char(hi)) if lo <= hi => {
                    items.push(Item::Range(lo, hi));
                }
                _ => return Err((item_at, "bad character range".into())),
            }
        }
        Ok(Class { negated, items })
    }

    /// The escape after a `\` at `at`.
    fn escape(&mut self, at: usize, in_class: bool) -> Parsed<Escaped> {
        let Some(c) = self.bump() else {
            return Err((at, "bad escape (end of pattern)".into()));
        };
        Ok(match c {
            'd' => Escaped::Set(Item::Digit(false)),
            'D' => Escaped::Set(Item::Digit(true)),
            'w' => Escaped::Set(Item::Word(false)),
            'W' => Escaped::Set(Item::Word(true)),
            's' => Escaped::Set(Item::Space(false)),
            'S' => Escaped::Set(Item::Space(true)),
            'n' => Escaped::Char('\n'),
            't' => Escaped::Char('\t'),
            'r' => Escaped::Char('\r'),
            'f' => Escaped::Char('\x0c'),
            'v' => Escaped::Char('\x0b'),
            'a' => Escaped::Char('\x07'),
            'b' if in_class => Escaped::Char('\x08'),
            'A' if !in_class => Escaped::Start,
            'Z' if !in_class => Escaped::EndText,
            'x' => {
                let hex: String = self
                    .chars
                    .get(self.pos..self.pos + 2)
                    .unwrap_or_default()
                    .iter()
                    .collect();
                let code = (hex.len() == 2)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32);
                match code {
                    Some(c) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        self.pos += 2;
                        Escaped::Char(c)
                    }
                    _ => return Err((at, "bad escape \\x".into())),
                }
            }
            'b' | 'B' => return Err((at, "word boundaries are not supported".into())),
            '0'..='9' if !in_class && c != '0' => {
                return Err((at, "backreferences are not supported".into()));
            }
            '0'..='9' => return Err((at, "octal escapes are not supported".into())),
            c if c.is_ascii_alphanumeric() => {
                return Err((at, format!("bad escape \\{c}")));
            }
            c => Escaped::Char(c),
        })
    }
}

/// What a `\` escape stands for.
#[derive(Clone, Copy)]
enum Escaped {
    Char(char),
    Set(Item),
    Start,
    EndText,
}
