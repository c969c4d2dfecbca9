/*
 * The Draw page: strokes drawn on the canvas with pointer events are sent to the "draw"
 * application, which passes them to every other page; strokes from others are drawn as they
 * arrive. Every stroke, local or remote, is removed 30 s after it was drawn. A template rendered
 * at start-up (example_draw::manifest_for): the server writes the application id and the
 * stroke lifetime in as JSON.
 * Plain canvas, no library. Needs thywill.js loaded first; no inline script.
 *
 * Test hooks: the canvas carries data-strokes (strokes shown now), data-drawn (strokes this
 * page sent) and data-received (strokes received); window.drawStrokes is the list shown.
 */
(function () {
  'use strict';

  var APPLICATION_ID = {{ application_id }};
  var STROKE_LIFETIME_MS = {{ stroke_lifetime_ms }};
  var MAX_POINTS = 2000;
  var STATUS_TEXT = {
    connecting: 'Connecting...',
    connected: 'Connected',
    disconnected: 'Disconnected'
  };

  class DrawInterface extends Thywill.ApplicationInterface {
    constructor(ui) {
      super(APPLICATION_ID);
      this.ui = ui;
      this.ctx = ui.canvas.getContext('2d');
      this.strokes = [];
      this.current = null;
      this.drawnCount = 0;
      this.receivedCount = 0;
      window.drawStrokes = this.strokes;
      this.listen();
    }

    connecting() {
      if (this.ui.status.className !== 'disconnected') {
        this.showStatus('connecting');
      }
    }

    connected() {
      this.showStatus('connected');
      this.ui.canvas.classList.add('enabled');
    }

    disconnected() {
      this.showStatus('disconnected');
      this.disable();
    }

    connectionFailure() {
      this.showStatus('disconnected');
      this.disable();
    }

    received(message) {
      var data = message.data;
      if (!data || !Array.isArray(data.segments)) {
        return;
      }
      var points = data.segments.filter(function (p) {
        return p && typeof p.x === 'number' && typeof p.y === 'number';
      });
      this.receivedCount += 1;
      this.add({ points: points, remote: true });
    }

    /** Pointer handling: a stroke starts on pointer down and ends on up, cancel or leave. */
    listen() {
      var self = this;
      var canvas = this.ui.canvas;
      canvas.addEventListener('pointerdown', function (event) {
        if (!Thywill.isConnected || event.button > 0) {
          return;
        }
        event.preventDefault();
        if (canvas.setPointerCapture) {
          try {
            canvas.setPointerCapture(event.pointerId);
          } catch (e) {
            // synthetic events have no active pointer to capture
          }
        }
        self.current = { points: [self.point(event)], remote: false };
        self.redraw();
      });
      canvas.addEventListener('pointermove', function (event) {
        if (!self.current) {
          return;
        }
        if (self.current.points.length < MAX_POINTS) {
          self.current.points.push(self.point(event));
        }
        self.redraw();
      });
      ['pointerup', 'pointercancel', 'pointerleave'].forEach(function (type) {
        canvas.addEventListener(type, function () {
          self.finish();
        });
      });
    }

    /** Ends the stroke in progress: keeps it for its lifetime and sends it if connected. */
    finish() {
      var stroke = this.current;
      if (!stroke) {
        return;
      }
      this.current = null;
      if (Thywill.isConnected) {
        this.send({ segments: stroke.points });
        this.drawnCount += 1;
      }
      this.add(stroke);
    }

    /** Shows a stroke and removes it after its lifetime. */
    add(stroke) {
      var self = this;
      this.strokes.push(stroke);
      this.redraw();
      setTimeout(function () {
        var i = self.strokes.indexOf(stroke);
        if (i >= 0) {
          self.strokes.splice(i, 1);
          self.redraw();
        }
      }, STROKE_LIFETIME_MS);
    }

    point(event) {
      var rect = this.ui.canvas.getBoundingClientRect();
      var sx = rect.width ? this.ui.canvas.width / rect.width : 1;
      var sy = rect.height ? this.ui.canvas.height / rect.height : 1;
      return {
        x: Math.round((event.clientX - rect.left) * sx * 10) / 10,
        y: Math.round((event.clientY - rect.top) * sy * 10) / 10
      };
    }

    redraw() {
      var ctx = this.ctx;
      var canvas = this.ui.canvas;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.lineWidth = 2;
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      ctx.strokeStyle = '#000000';
      var all = this.current ? this.strokes.concat([this.current]) : this.strokes;
      all.forEach(function (stroke) {
        var pts = stroke.points;
        if (pts.length === 0) {
          return;
        }
        ctx.beginPath();
        ctx.moveTo(pts[0].x, pts[0].y);
        if (pts.length === 1) {
          ctx.lineTo(pts[0].x + 0.1, pts[0].y + 0.1);
        }
        for (var i = 1; i < pts.length; i++) {
          ctx.lineTo(pts[i].x, pts[i].y);
        }
        ctx.stroke();
      });
      canvas.dataset.strokes = String(this.strokes.length);
      canvas.dataset.drawn = String(this.drawnCount);
      canvas.dataset.received = String(this.receivedCount);
    }

    disable() {
      this.current = null;
      this.ui.canvas.classList.remove('enabled');
      this.redraw();
    }

    showStatus(state) {
      this.ui.status.className = state;
      this.ui.status.textContent = STATUS_TEXT[state];
    }
  }

  function start() {
    new DrawInterface({
      canvas: document.getElementById('canvas'),
      status: document.getElementById('status')
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
