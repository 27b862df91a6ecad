package policies

import "testing"

// BenchmarkFoldWords measures the per-message folding that keyword
// matching starts with, for texts of the spaced scripts (the common case,
// which must stay fast) and of scripts written without spaces.
func BenchmarkFoldWords(b *testing.B) {
	for _, bc := range []struct{ name, text string }{
		{"ascii", "Hello! Could you tell me whether my order #12345 has shipped to Zurich yet?"},
		{"latin-accents", "Bonjour, pourriez-vous me dire si ma commande numéro 12345 a été expédiée à Zürich?"},
		{"chinese", "你好，请问我的订单12345已经发货到苏黎世了吗？我想和人工客服谈谈。"},
		{"japanese", "こんにちは。注文番号12345はもう発送されましたか？担当者と話したいです。"},
		{"thai", "สวัสดีครับ ขอคุยกับพนักงานหน่อย คำสั่งซื้อ 12345 ส่งแล้วหรือยัง"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var buf [512]byte
			var spans [176]span
			b.SetBytes(int64(len(bc.text)))
			b.ReportAllocs()
			for b.Loop() {
				foldWords(bc.text, buf[:0], spans[:0])
			}
		})
	}
}
