//! The full-screen board of `funnelstream tail` (ratatui on crossterm):
//! the rows and columns of [`super::board`], updated in place from the
//! stream, changed cells highlighted for a moment, the engine's health in a
//! status line and the keys in a help line. The terminal is restored on
//! every way out (keys, the engine going away, a panic).

use super::board::{self, Row, Settings, Store, COLUMNS};
use super::feed::{self, Health, Msg, Readiness};
use super::{TailArgs, TailError};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row as TRow, Table, TableState};
use ratatui::Frame;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// How long a changed cell stays highlighted.
const FLASH: Duration = Duration::from_secs(2);

enum Link {
    Connecting,
    Live,
    Retrying {
        attempt: u32,
        at: Instant,
        reason: String,
    },
}

struct App {
    url: String,
    store: Store,
    s: Settings,
    /// The window of `--window` (empty: 30d, 1d or the shortest served).
    asked_window: String,
    windows: Vec<String>,
    rows: Vec<Row>,
    total: Row,
    table: TableState,
    /// The cells of the last refresh, to spot changes.
    prev: HashMap<(Vec<String>, usize), (String, Option<f64>)>,
    /// Changed cells: when, and whether the value went up.
    flash: HashMap<(Vec<String>, usize), (Instant, bool)>,
    editing: bool,
    link: Link,
    connected_once: bool,
    health: Health,
    /// Events ingested per second between the last two health samples.
    rate: Option<f64>,
}

impl App {
    /// Recomputes the shown rows; `mark`: highlight the cells that changed
    /// since the last refresh (not after a change of view, window or
    /// filter, which changes every cell).
    fn refresh(&mut self, mark: bool) {
        self.windows = self.store.windows();
        if self.asked_window.is_empty() && !self.windows.contains(&self.s.window) {
            self.s.window = super::pick_window("", &self.windows);
        }
        let (rows, total) = board::shown(&self.store, &self.s);
        let now = Instant::now();
        let mut next = HashMap::new();
        for r in rows.iter().chain(std::iter::once(&total)) {
            for (i, (cell, v)) in r.cells.iter().zip(&r.values).enumerate() {
                let k = (r.name.clone(), i);
                if mark {
                    if let Some((before, bv)) = self.prev.get(&k) {
                        if before != cell {
                            let up = matches!((bv, v), (Some(b), Some(a)) if a > b)
                                || (bv.is_none() && v.is_some());
                            self.flash.insert(k.clone(), (now, up));
                        }
                    }
                }
                next.insert(k, (cell.clone(), *v));
            }
        }
        if !mark {
            self.flash.clear();
        }
        self.flash
            .retain(|_, (t, _)| now.duration_since(*t) < FLASH);
        self.prev = next;
        self.rows = rows;
        self.total = total;
        if let Some(sel) = self.table.selected() {
            if sel >= self.rows.len() {
                self.table
                    .select(self.rows.len().checked_sub(1).filter(|_| sel > 0));
            }
        }
    }

    /// The next (`by` 1) or previous (`by` ncols - 1) sort column among
    /// those shown (a v2 column without values is hidden).
    fn step_sort(&mut self, by: usize, ncols: usize) {
        let cols = board::visible(&self.total);
        for _ in 0..ncols {
            self.s.sort = (self.s.sort + by) % ncols;
            if self.s.sort == 0 || cols.contains(&(self.s.sort - 1)) {
                break;
            }
        }
        self.s.descending = self.s.sort != 0;
    }

    fn on_msg(&mut self, m: Msg) -> Option<Result<(), TailError>> {
        match m {
            Msg::Snapshot(s) => {
                let mark = self.connected_once;
                self.store.apply(&s, true);
                self.link = Link::Live;
                self.connected_once = true;
                self.refresh(mark);
            }
            Msg::Changes(s) => {
                self.store.apply(&s, false);
                self.refresh(true);
            }
            Msg::Retrying {
                attempt,
                wait,
                reason,
            } => {
                self.link = Link::Retrying {
                    attempt,
                    at: Instant::now() + wait,
                    reason,
                };
            }
            Msg::Gone(reason) => {
                return Some(Err(if self.connected_once {
                    TailError::Gone {
                        url: self.url.clone(),
                        reason,
                    }
                } else {
                    TailError::Unreachable(reason)
                }))
            }
            Msg::Fatal(e) => return Some(Err(e.into())),
            Msg::Health(h) => {
                if let (Some(a), Some(b), Some(t0), Some(t1)) =
                    (self.health.counters, h.counters, self.health.at, h.at)
                {
                    let dt = t1.duration_since(t0).as_secs_f64();
                    if dt > 0.0 && b[0] >= a[0] {
                        self.rate = Some((b[0] - a[0]) / dt);
                    }
                }
                self.health = h;
            }
        }
        None
    }

    /// Handles a key; `Some(())`: quit.
    fn on_key(&mut self, code: KeyCode, mods: KeyModifiers) -> Option<()> {
        if mods.contains(KeyModifiers::CONTROL) && code == KeyCode::Char('c') {
            return Some(());
        }
        if self.editing {
            match code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.s.filter.clear();
                }
                KeyCode::Backspace => {
                    self.s.filter.pop();
                }
                KeyCode::Char(c) => self.s.filter.push(c),
                _ => return None,
            }
            self.table.select(None);
            self.refresh(false);
            return None;
        }
        let ncols = COLUMNS.len() + 1;
        match code {
            KeyCode::Char('q') | KeyCode::Esc => return Some(()),
            KeyCode::Char('v') | KeyCode::Char('c') => {
                self.s.view = self.s.view.next();
                if self.s.sort == 0 {
                    self.s.descending = false;
                }
                self.table.select(None);
            }
            KeyCode::Char('w') | KeyCode::Char('W') | KeyCode::Tab | KeyCode::BackTab => {
                if !self.windows.is_empty() {
                    let n = self.windows.len();
                    let i = self
                        .windows
                        .iter()
                        .position(|w| *w == self.s.window)
                        .unwrap_or(n - 1);
                    let back = matches!(code, KeyCode::Char('W') | KeyCode::BackTab);
                    let j = if back { (i + n - 1) % n } else { (i + 1) % n };
                    self.s.window = self.windows[j].clone();
                    self.asked_window = self.s.window.clone();
                }
            }
            KeyCode::Right | KeyCode::Char('>') | KeyCode::Char('l') => {
                self.step_sort(1, ncols);
            }
            KeyCode::Left | KeyCode::Char('<') | KeyCode::Char('h') => {
                self.step_sort(ncols - 1, ncols);
            }
            KeyCode::Char('r') => self.s.descending = !self.s.descending,
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Down | KeyCode::Char('j') => self.table.select_next(),
            KeyCode::Up | KeyCode::Char('k') => self.table.select_previous(),
            KeyCode::PageDown => self.table.scroll_down_by(10),
            KeyCode::PageUp => self.table.scroll_up_by(10),
            KeyCode::Home | KeyCode::Char('g') => self.table.select_first(),
            KeyCode::End | KeyCode::Char('G') => self.table.select_last(),
            _ => return None,
        }
        self.refresh(false);
        None
    }
}

pub fn run(args: &TailArgs, s: Settings) -> Result<(), TailError> {
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let (a, q, follow, tx) = (
            args.clone(),
            super::query(args, false),
            args.follow,
            tx.clone(),
        );
        std::thread::spawn(move || feed::stream(a, q, follow, tx));
    }
    {
        let a = args.clone();
        std::thread::spawn(move || {
            feed::health(a, Duration::from_secs(2), Duration::from_secs(10), tx)
        });
    }
    let mut app = App {
        url: args.url.clone(),
        store: Store::default(),
        asked_window: s.window.clone(),
        s,
        windows: Vec::new(),
        rows: Vec::new(),
        total: Row {
            name: vec![],
            values: vec![],
            cells: vec![],
        },
        table: TableState::default(),
        prev: HashMap::new(),
        flash: HashMap::new(),
        editing: false,
        link: Link::Connecting,
        connected_once: false,
        health: Health::default(),
        rate: None,
    };
    app.refresh(false);
    let mut terminal = ratatui::try_init().map_err(TailError::Terminal)?;
    let end = event_loop(&mut terminal, &mut app, &rx);
    ratatui::restore();
    end
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    rx: &Receiver<Msg>,
) -> Result<(), TailError> {
    loop {
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    if let Some(end) = app.on_msg(m) {
                        return end;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(TailError::Ended(app.url.clone())),
            }
        }
        let now = Instant::now();
        app.flash.retain(|_, (t, _)| now.duration_since(*t) < FLASH);
        terminal.draw(|f| draw(f, app)).map_err(TailError::Draw)?;
        if event::poll(Duration::from_millis(150)).map_err(TailError::Input)? {
            if let Event::Key(k) = event::read().map_err(TailError::Input)? {
                if k.kind == KeyEventKind::Press && app.on_key(k.code, k.modifiers).is_some() {
                    return Ok(());
                }
            }
        }
    }
}

fn draw(f: &mut Frame, app: &mut App) {
    let [title, body, status, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(board::title(&app.url, &app.store, &app.s)).bold(),
        title,
    );
    let table = board_table(app);
    if app.rows.is_empty() {
        let msg = empty_board_message(app);
        let [t, m] = Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(body);
        f.render_stateful_widget(table, t, &mut app.table);
        f.render_widget(Paragraph::new(msg).italic(), m);
    } else {
        f.render_stateful_widget(table, body, &mut app.table);
    }

    f.render_widget(Paragraph::new(status_line(app)), status);
    f.render_widget(Paragraph::new(help_line(app)), help);
}

/// The shown rows under the column headers, the total as footer.
fn board_table(app: &App) -> Table<'static> {
    let labels = app.s.view.headers().len();
    let cols = board::visible(&app.total);
    let head = sorted_headers(app, &cols, labels);
    let projected: Vec<Row> = app
        .rows
        .iter()
        .chain(std::iter::once(&app.total))
        .map(|r| r.project(&cols))
        .collect();
    let widths = board::widths(&head, &projected.iter().collect::<Vec<_>>());
    let header = TRow::new(head.iter().enumerate().map(|(i, h)| {
        let l = Line::from(h.clone());
        Cell::from(if i < labels { l } else { l.right_aligned() })
    }))
    .style(Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD));
    let rows: Vec<TRow> = app
        .rows
        .iter()
        .map(|r| TRow::new(row_cells(r, &cols, &app.flash)))
        .collect();
    let footer = TRow::new(row_cells(&app.total, &cols, &app.flash)).bold();
    Table::new(rows, widths.iter().map(|w| Constraint::Length(*w as u16)))
        .header(header)
        .footer(footer)
        .column_spacing(2)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
}

/// The headers of the shown columns, the sort column's with an arrow
/// telling the order.
fn sorted_headers(app: &App, cols: &[usize], labels: usize) -> Vec<String> {
    let mut head = board::headers(app.s.view, cols);
    let arrow = if app.s.descending { "▼" } else { "▲" };
    if app.s.sort == 0 {
        head[0] = format!("{}{arrow}", head[0]);
    } else if let Some(p) = cols.iter().position(|c| *c == app.s.sort - 1) {
        let i = labels + p;
        head[i] = format!("{}{arrow}", head[i]);
    }
    head
}

/// A row's label cells and its shown value cells, those changed lately
/// green (up) or red (down).
fn row_cells(
    r: &Row,
    cols: &[usize],
    flash: &HashMap<(Vec<String>, usize), (Instant, bool)>,
) -> Vec<Cell<'static>> {
    let mut v: Vec<Cell> = r.name.iter().map(|n| Cell::from(n.clone())).collect();
    for &i in cols {
        let c = &r.cells[i];
        let mut line = Line::from(c.clone()).right_aligned();
        if let Some((_, up)) = flash.get(&(r.name.clone(), i)) {
            line = line.style(Style::new().fg(Color::Black).bg(if *up {
                Color::Green
            } else {
                Color::Red
            }));
        }
        v.push(Cell::from(line));
    }
    v
}

/// Why the board has no row.
fn empty_board_message(app: &App) -> String {
    match (&app.link, app.connected_once) {
        (_, false) => "waiting for the engine...".to_string(),
        _ if !app.windows.is_empty() && !app.windows.contains(&app.s.window) => format!(
            "window {} is not served (served: {}); press w",
            app.s.window,
            app.windows.join(", ")
        ),
        _ if !app.s.filter.is_empty() => format!("no row matches \"{}\"", app.s.filter),
        _ => "no data in this window yet".to_string(),
    }
}

/// The filter being typed, or the keys.
fn help_line(app: &App) -> Line<'static> {
    if app.editing {
        return Line::from(vec![
            Span::from(" filter: ").reversed(),
            Span::from(format!("{}▏", app.s.filter)),
            Span::from("   Enter keep  Esc clear").dim(),
        ]);
    }
    let mut spans = Vec::new();
    for (k, what) in [
        ("q", "quit"),
        ("v", "channel/campaign"),
        ("w", "window"),
        ("←→", "sort column"),
        ("r", "reverse"),
        ("/", "filter"),
        ("↑↓", "scroll"),
    ] {
        spans.push(Span::from(format!(" {k} ")).reversed());
        spans.push(Span::from(format!(" {what}  ")));
    }
    Line::from(spans)
}

fn status_line(app: &App) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    spans.push(Span::from("engine ").bold());
    spans.push(match &app.health.ready {
        None => Span::from("..."),
        Some(Readiness::Ready) => Span::from("ready").green().bold(),
        Some(Readiness::Unreachable) => Span::from("unreachable").red().bold(),
        Some(Readiness::NotReady(e)) => {
            let why = e
                .find("not ready")
                .map(|i| e[i..].to_string())
                .unwrap_or_else(|| e.clone());
            Span::from(why).yellow().bold()
        }
    });
    if let Some(c) = app.health.counters {
        let mut t = format!("  ingested {:.0}", c[0]);
        if let Some(r) = app.rate {
            t.push_str(&format!(" ({r:.0}/s)"));
        }
        t.push_str(&format!(
            "  rejected {:.0}  duplicate {:.0}  late {:.0}  lag {:.0}",
            c[1], c[2], c[3], c[4]
        ));
        spans.push(Span::from(t));
    }
    spans.push(Span::from("  |  "));
    spans.push(match &app.link {
        Link::Connecting => Span::from("connecting").yellow(),
        Link::Live => Span::from("stream live").green(),
        Link::Retrying {
            attempt,
            at,
            reason,
        } => {
            let left = at.saturating_duration_since(Instant::now()).as_secs_f64();
            Span::from(format!(
                "engine gone ({reason}): reconnecting in {left:.1}s, attempt {attempt}"
            ))
            .red()
            .bold()
        }
    });
    spans.push(Span::from(format!("  |  {} rows", app.rows.len())));
    Line::from(spans)
}
