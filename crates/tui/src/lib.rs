//! `crit tui DIR`: browse a CRIU image set in the terminal.
//!
//! * [`model`]: what is shown, built lazily from an [`cryo_image::ImageSet`];
//! * [`app`]: the state and what keys and the mouse do to it (no drawing);
//! * [`ui`] and [`tabs`]: drawing, one module per tab;
//! * [`run`]: the terminal and the event loop.

pub mod app;
pub mod model;
pub mod tabs;
pub mod ui;

use std::io;
use std::time::Duration;

use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::execute;
use ratatui::DefaultTerminal;

pub use app::App;
pub use model::Dump;

/// Run the UI on the terminal until the user quits.
pub fn run(dump: Dump) -> io::Result<()> {
    let mut terminal = ratatui::init();
    let mouse = execute!(io::stdout(), EnableMouseCapture).is_ok();
    let r = event_loop(&mut terminal, App::new(dump));
    if mouse {
        let _ = execute!(io::stdout(), DisableMouseCapture);
    }
    ratatui::restore();
    r
}

fn event_loop(terminal: &mut DefaultTerminal, mut app: App) -> io::Result<()> {
    while !app.quit {
        terminal.draw(|f| ui::draw(f, &mut app))?;
        // While a search runs, answer pending events first, then do one bounded step.
        let wait = if app.busy() {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        };
        if event::poll(wait)? {
            handle(&mut app, event::read()?);
            while event::poll(Duration::ZERO)? {
                handle(&mut app, event::read()?);
            }
        } else {
            app.tick();
        }
    }
    Ok(())
}

fn handle(app: &mut App, ev: Event) {
    match ev {
        Event::Key(k) => app.on_key(k),
        Event::Mouse(m) => app.on_mouse(m),
        // The next draw lays everything out for the new size.
        Event::Resize(..) => {}
        _ => {}
    }
}
