//! A TCP proxy in front of mmsim whose WebSocket connections can be frozen (T-8, a half-open
//! socket): bytes are read and dropped in both directions, and the sockets stay open.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;

/// The proxy; point the client at [`FreezeProxy::url`].
pub struct FreezeProxy {
    pub url: String,
    freeze: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    /// WebSockets opened through the proxy so far.
    pub ws_opened: Arc<AtomicUsize>,
}

impl FreezeProxy {
    pub async fn start(upstream: &str) -> Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let freeze: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let ws_opened = Arc::new(AtomicUsize::new(0));
        let (f2, w2) = (Arc::clone(&freeze), Arc::clone(&ws_opened));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, freeze, ws_opened) =
                    (target.clone(), Arc::clone(&f2), Arc::clone(&w2));
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let frozen = Arc::new(AtomicBool::new(false));
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let mut first = vec![0u8; 8192];
                    let Ok(n) = cr.read(&mut first).await else {
                        return;
                    };
                    if String::from_utf8_lossy(&first[..n]).contains("/api/v4/websocket") {
                        ws_opened.fetch_add(1, Ordering::SeqCst);
                        freeze
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Arc::clone(&frozen));
                    }
                    if sw.write_all(&first[..n]).await.is_err() {
                        return;
                    }
                    let f = Arc::clone(&frozen);
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 8192];
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            if !f.load(Ordering::SeqCst) && sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 8192];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if !frozen.load(Ordering::SeqCst) && cw.write_all(&buf[..n]).await.is_err()
                        {
                            break;
                        }
                    }
                    let _ = up.await;
                });
            }
        });
        Ok(Self {
            url,
            freeze,
            ws_opened,
        })
    }

    /// Freeze every WebSocket opened so far.
    pub fn freeze_all(&self) {
        for f in self
            .freeze
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            f.store(true, Ordering::SeqCst);
        }
    }
}
